"""The client is complete: every route of the running app's OpenAPI document has a SecureGateClient method
(marked `@route("METHOD /path")`), every marked method names a route the app serves, and each one sends its
request to the route it names. A route added without its client method fails here."""

from __future__ import annotations

import inspect
import re
import typing

import httpx
import pytest

from securegate import client as sgc
from securegate.client import SecureGateClient

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def client_routes() -> dict[str, list[str]]:
    """"METHOD /path" -> the client methods marked with it."""
    routes: dict[str, list[str]] = {}
    for name, member in vars(SecureGateClient).items():
        if endpoint := getattr(member, "route", None):
            routes.setdefault(endpoint, []).append(name)
    return routes


def test_every_route_of_the_openapi_has_a_client_method(http):
    spec = http.get("/openapi.json").json()
    served = {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item if method in HTTP_METHODS}
    assert len(served) >= 51 and "GET /v1/events/stream" in served and "POST /v1/streams/{stream_id}/frames" in served
    marked = client_routes()
    missing = sorted(served - set(marked))
    assert not missing, f"routes without a SecureGateClient method (add one marked @route(...)): {missing}"
    stale = sorted(set(marked) - served)
    assert not stale, f"client methods marked with routes the app does not serve: {stale}"


# Arguments for the methods' required parameters, by name (the ids are any one path segment).
DUMMY = {"image": b"img", "image_a": b"img", "image_b": b"img", "jpeg": b"img", "items": [{"external_id": "e", "image": b"i"}],
         "settings": {"k": 1}, "scopes": ["audit:read"], "to": "pack", "name": "name-1", "url": "http://h/x",
         "merged_person_id": "p2", "to_person_id": "p3"}


def _call(sg: SecureGateClient, name: str) -> None:
    method = getattr(sg, name)
    hints = typing.get_type_hints(getattr(SecureGateClient, name))
    args = {}
    for param in inspect.signature(method).parameters.values():
        if param.default is not inspect.Parameter.empty:
            continue
        if param.name in DUMMY:
            args[param.name] = DUMMY[param.name]
        elif hints.get(param.name) is str:
            args[param.name] = f"{param.name}-1"
        else:
            raise AssertionError(f"{name}: no dummy value for its required parameter {param.name!r}; add one to DUMMY")
    try:
        answer = method(**args)
        if isinstance(answer, sgc.EventStream):  # lazy: connects on the first event
            with answer:
                next(answer)
    except sgc.SecureGateError as exc:
        assert exc.code == "not_found", exc


@pytest.mark.parametrize("endpoint, name", [(e, n) for e, names in sorted(client_routes().items()) for n in names])
def test_each_marked_method_sends_its_route(endpoint, name):
    """Through a recording transport (a stand-in for the server: every answer is 404): the method and path sent
    match the route the method is marked with, with each path parameter one segment."""
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "recorded"}})

    with SecureGateClient("http://sg.test", api_key="sg_a_b", admin_token="admin", transport=httpx.MockTransport(record)) as sg:
        _call(sg, name)
    method, template = endpoint.split(" ", 1)
    pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$"
    assert [(r.method, bool(re.match(pattern, r.url.path))) for r in sent] == [(method, True)], \
        (name, [(r.method, r.url.path) for r in sent])
