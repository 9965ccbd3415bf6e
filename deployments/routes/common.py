"""What every route module shares: bearer parsing, our error body on every answer (the app's exception
handlers), the body and URL limit middleware, and the error tables the OpenAPI documents per route."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayError
from starlette.exceptions import HTTPException as StarletteHTTPException

from securegate import errors
from securegate import schemas as s

# Every status a route can answer with, documented with our error body (422 replaces FastAPI's default
# validation schema, which we never send: validation errors are 400 invalid_request).
STATELESS_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 413, 414, 422, 503)}
TENANT_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 414, 422, 429, 500, 503, 507)}
ADMIN_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 413, 414, 422, 503, 507)}


def collaborator(name: str, kind: type) -> Any:
    """A route parameter's type: the replica's collaborator `name`, which deployments/routes/app.py puts in the
    app's state (`Faces = collaborator("faces", FaceApi)`; a route takes `faces: Faces`)."""
    def from_state(request: Request):
        return getattr(request.app.state, name)

    return Annotated[kind, Depends(from_state)]


def bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
        raise errors.Unauthenticated("send 'Authorization: Bearer <key>'")
    return authorization[7:].strip()


def error_response(exc: errors.ApiError) -> JSONResponse:
    headers = {}
    if "retry_after_s" in exc.details:
        headers["Retry-After"] = errors.retry_after_header(exc.details["retry_after_s"])
    return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)


# ------------------------------------------------------------------------------------- exception handlers
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")} for e in exc.errors()]
    return error_response(errors.InvalidRequest("request body does not match the schema", problems=problems))


async def _framework_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals (a body that is not UTF-8 JSON, an unknown route or method) in our shape."""
    if isinstance(exc, _BodyTooLarge):
        return error_response(errors.PayloadTooLarge(exc.detail, max_bytes=exc.max_bytes))
    kind = {404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.PayloadTooLarge,
            414: errors.UriTooLong}.get(exc.status_code, errors.InvalidRequest)
    return JSONResponse(status_code=exc.status_code, content=kind(str(exc.detail)).body(),
                        headers=getattr(exc, "headers", None))


async def _api_error(_: Request, exc: errors.ApiError) -> JSONResponse:
    return error_response(exc)


async def _replica_error(_: Request, exc: RayError) -> JSONResponse:
    return error_response(errors.to_api_error(exc))


def add_error_handlers(api: FastAPI) -> None:
    """Every answer of `api`, the framework's refusals included, in our error shape."""
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(StarletteHTTPException, _framework_error)
    api.add_exception_handler(errors.ApiError, _api_error)
    api.add_exception_handler(RayError, _replica_error)


# ---------------------------------------------------------------------------------------- body/URL limits
# Our URL limit (path + query), answered 414 uri_too_long. The HTTP server in Serve's proxy (uvicorn with
# httptools) refuses URLs over 65535 bytes itself, with a plain-text 400 "Invalid HTTP request received.",
# while parsing, before any ASGI code (ours or Serve's) runs, and Serve's http_options expose no parser
# setting: that one answer cannot be in our shape. Everything from here up to it is.
MAX_URL_BYTES = 8192


class BodyLimit:
    """ASGI middleware: refuses bodies over the limit from Content-Length, or while streaming when absent,
    and URLs over MAX_URL_BYTES."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = errors.PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes", max_bytes=self.max_bytes)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"")
        if url_bytes > MAX_URL_BYTES:
            return await error_response(errors.UriTooLong(
                f"the URL is {url_bytes} bytes, over the limit of {MAX_URL_BYTES}", max_bytes=MAX_URL_BYTES))(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await error_response(too_large)(scope, receive, send)


class _BodyTooLarge(StarletteHTTPException):
    """Raised from the body stream (chunked bodies declare no length). An HTTPException because FastAPI
    re-raises those from body parsing and turns any other error there into a 400; answered as 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes
