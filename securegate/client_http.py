"""How securegate.client talks HTTP: one httpx.Client, a bearer credential per call, the retry policy, error
answers raised as `SecureGateError`s and answers validated as their response model. The client's methods and
its event stream (securegate/client_events.py) share it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pydantic

from securegate.client_errors import SecureGateConnectionError, SecureGateError, error_from_response
from securegate.client_retry import RetryPolicy

Answer = type[pydantic.BaseModel] | pydantic.TypeAdapter | None


class ApiSession:
    """Sends SecureGate requests on `http`; retries what `retry` allows (None: nothing)."""

    def __init__(self, http: httpx.Client, retry: RetryPolicy | None) -> None:
        self.http = http
        self.retry = retry

    def request(self, method: str, path: str, answer: Answer = None, *, auth: str | None = None, json: Any = None,
                params: Mapping[str, Any] | None = None, content: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        """The answer validated as `answer` (a response model), or None without one."""

        def send() -> httpx.Response:
            with _mapped_transport_errors(method, path):
                response = self.http.request(method, path, json=json, params=params, content=content,
                                             headers=_headers(auth, headers))
            if response.is_error:
                raise error_from_response(response)
            return response

        response = self.retry.call(send) if self.retry else send()
        return None if answer is None else validate(answer, response.content, response.status_code, f"{method} {path}")

    @contextlib.contextmanager
    def stream(self, method: str, path: str, *, auth: str | None = None, params: Mapping[str, Any] | None = None,
               headers: Mapping[str, str] | None = None, timeout: httpx.Timeout | None = None) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (an error answer is raised, and retried, like `request`'s);
        closed when the block ends."""

        def open_response() -> httpx.Response:
            with _mapped_transport_errors(method, path):
                request = self.http.build_request(method, path, params=params, headers=_headers(auth, headers),
                                                  timeout=timeout if timeout is not None else self.http.timeout)
                response = self.http.send(request, stream=True)
            if response.is_error:
                try:
                    response.read()
                finally:
                    response.close()
                raise error_from_response(response)
            return response

        response = self.retry.call(open_response) if self.retry else open_response()
        try:
            yield response
        finally:
            response.close()


def validate(answer: Answer, content: bytes | str, status: int | None, what: str) -> Any:
    """JSON `content` as `answer`; one that does not match is `invalid_response`, not a half-filled object."""
    try:
        if isinstance(answer, pydantic.TypeAdapter):
            return answer.validate_json(content)
        return answer.model_validate_json(content)
    except pydantic.ValidationError as exc:  # another server version, or not SecureGate at all
        raise SecureGateError(status, "invalid_response", f"{what}: the answer does not match its schema: {exc}") from exc


@contextlib.contextmanager
def _mapped_transport_errors(method: str, path: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise SecureGateConnectionError(None, "timeout", f"{method} {path}: {exc!r}") from exc
    except httpx.TransportError as exc:
        raise SecureGateConnectionError(None, "connection_error", f"{method} {path}: {exc!r}") from exc


def _headers(auth: str | None, headers: Mapping[str, str] | None) -> dict[str, str] | None:
    merged = {**(headers or {}), **({"Authorization": f"Bearer {auth}"} if auth else {})}
    return merged or None
