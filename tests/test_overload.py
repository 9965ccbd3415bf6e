"""Past capacity SecureGate answers at once with 503 `overloaded` and Retry-After, instead of queueing callers for
seconds: the Detector's queue per caller is bounded (Serve's `max_queued_requests`, configs/*.yaml) and Serve's
BackPressureError becomes that answer. Here a second Ingress over a Detector of capacity 1 + 1 queued is
driven with 8 concurrent images through HTTP."""

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from ray.serve.exceptions import BackPressureError

from deployments.routes.common import error_response
from securegate import errors


def test_backpressure_is_503_overloaded_with_retry_after():
    mapped = errors.to_api_error(BackPressureError(num_queued_requests=9, max_queued_requests=8))
    assert (mapped.status, mapped.code) == (503, "overloaded")
    assert error_response(mapped).headers["Retry-After"] == "1"


@pytest.fixture(scope="module")
def small_app(app, serve_port, models_dir, tmp_path_factory):
    """Its own Ingress and small Detector; the session app's Embedder, TenantRouter and KeyService are borrowed
    (only /v1/detect is called here), so two replicas start instead of a whole second app's six."""
    from ray import serve

    from deployments.detector import Detector
    from deployments.ingress import Ingress
    from securegate.settings import Settings

    data_dir = tmp_path_factory.mktemp("overload-data")
    settings = Settings.from_args({"models": str(models_dir), "data_dir": str(data_dir)}).model_dump()
    borrowed = {name: serve.get_deployment_handle(name, "securegate") for name in ("Embedder", "TenantRouter", "KeyService")}
    detector = Detector.options(num_replicas=1, max_ongoing_requests=1, max_queued_requests=1).bind(settings)
    serve.run(Ingress.bind(settings, detector, borrowed["Embedder"], borrowed["TenantRouter"], borrowed["KeyService"]),
              name="overload", route_prefix="/overload")
    try:
        yield f"http://127.0.0.1:{serve_port}/overload"
    finally:
        serve.delete("overload")


def test_concurrent_images_past_capacity_get_503_at_once(small_app, identity_photos):
    body = {"image": base64.b64encode(identity_photos["obama"][0].read_bytes()).decode()}
    with httpx.Client(base_url=small_app, timeout=60) as http:
        assert http.post("/v1/detect", json=body).status_code == 200  # warm

        def one(_):
            started = time.perf_counter()
            r = http.post("/v1/detect", json=body)
            return r, time.perf_counter() - started

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(one, range(8)))
    ok = [t for r, t in answers if r.status_code == 200]
    refused = [(r, t) for r, t in answers if r.status_code != 200]
    assert ok and refused, [r.status_code for r, _ in answers]
    for r, _ in refused:
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        assert r.headers["Retry-After"] == "1"
    # Refused at once: faster than the slowest accepted image, which waited its turn in the bounded queue.
    assert min(t for _, t in refused) < max(ok)


class _CountingTransport(httpx.HTTPTransport):
    """httpx's own transport, keeping the status of every answer (to see the client's retries)."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def test_the_client_retries_overloaded_until_served(small_app, identity_photos):
    """The same 8 concurrent images through SecureGateClient with its default retry policy: the refusals
    (503 overloaded) are sent again after Retry-After, and every image is detected."""
    from securegate.client import SecureGateClient

    transport = _CountingTransport()
    with SecureGateClient(small_app, transport=transport) as sg:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: sg.detect(identity_photos["obama"][0]), range(8)))
    assert all(len(faces) == 1 for faces in answers)
    assert transport.statuses.count(503) >= 1 and transport.statuses.count(200) == 8, transport.statuses
