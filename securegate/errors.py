"""The API's error vocabulary: a stable code per failure, one HTTP status per code.

Deployments raise these; the ingress turns them into `{"error": {"code", "message", ...}}`. Codes are part
of the public contract: add new ones, never rename.

The one error table: `to_api_error` answers every exception. The layers below (tenancy) keep their own
exception types and declare the API error each is answered with (a class attribute `api_error`), so this
module, the bottom layer, imports none of them and neither does the HTTP ingress.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import re


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict:
        err = {"code": self.code, "message": public_message(self.message) or self.code}
        if self.details:
            err.update(self.details)
        return {"error": err}

    def __reduce__(self):  # survives pickling across Ray processes with its details
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(cls, message, details):
    return cls(message, **details)


def _error(name: str, status: int, code: str) -> type[ApiError]:
    return type(name, (ApiError,), {"status": status, "code": code})


InvalidRequest = _error("InvalidRequest", 400, "invalid_request")
InvalidImage = _error("InvalidImage", 400, "invalid_image")
Unauthenticated = _error("Unauthenticated", 401, "unauthenticated")
Forbidden = _error("Forbidden", 403, "forbidden")
NotFound = _error("NotFound", 404, "not_found")
MethodNotAllowed = _error("MethodNotAllowed", 405, "method_not_allowed")
Conflict = _error("Conflict", 409, "conflict")
# A correction that names one person twice (merge into itself, a face moved to its own person, a person's own
# face as their rejection): the request conflicts with the gallery as it stands.
SamePerson = _error("SamePerson", 409, "same_person")
PayloadTooLarge = _error("PayloadTooLarge", 413, "payload_too_large")
UriTooLong = _error("UriTooLong", 414, "uri_too_long")
ImageTooLarge = _error("ImageTooLarge", 413, "image_too_large")
# A raw body (a pushed camera frame) sent as a media type the endpoint does not take.
UnsupportedMediaType = _error("UnsupportedMediaType", 415, "unsupported_media_type")
NoFace = _error("NoFace", 422, "no_face")
MultipleFaces = _error("MultipleFaces", 422, "multiple_faces")
LowQuality = _error("LowQuality", 422, "low_quality")
ModelMismatch = _error("ModelMismatch", 422, "model_mismatch")
RateLimited = _error("RateLimited", 429, "rate_limited")
# A model migration refused: the tenant keeps no enrolment crops (or not for every face) to re-embed.
NoKeptCrops = _error("NoKeptCrops", 409, "no_kept_crops")
CorruptRecord = _error("CorruptRecord", 500, "corrupt_record")  # stored data failed authentication
KmsUnavailable = _error("KmsUnavailable", 503, "kms_unavailable")
ServiceUnavailable = _error("ServiceUnavailable", 503, "unavailable")  # retry: a dependency is restarting
NotReady = _error("NotReady", 503, "not_ready")
# Past capacity: the image's expected wait would pass the latency budget (deployments/admission.py), or a
# deployment's queue (Serve's max_queued_requests, the backstop) is full. Nothing was done; retry after
# `retry_after_s`. Answered at once instead of letting every caller wait seconds.
Overloaded = _error("Overloaded", 503, "overloaded")
OVERLOAD_RETRY_AFTER_S = 1.0
# The data disk is full (SQLite's SQLITE_FULL, ENOSPC): nothing of the request was stored. Writes resume on
# their own once space is freed; retry after `retry_after_s`.
InsufficientStorage = _error("InsufficientStorage", 507, "insufficient_storage")
DISK_FULL_RETRY_AFTER_S = 30.0
DISK_FULL_MESSAGE = "the data disk is full: nothing was stored; retry once space has been freed on the server"


def retry_after_header(seconds: float) -> str:
    """The Retry-After header of a rate_limited or overloaded answer: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def declared_api_error(exc: BaseException) -> ApiError | None:
    """The API error that `exc` (or the exception Ray wrapped in it) declares with `api_error`, carrying the
    details of its `api_details()`; a full disk, wherever it was hit, is InsufficientStorage; None otherwise."""
    cause = root_cause(exc)
    for candidate in (cause, exc):
        kind = getattr(type(candidate), "api_error", None)
        if kind is not None:
            details = candidate.api_details() if hasattr(candidate, "api_details") else {}
            return kind(_first_line(cause) or kind.code, **details)
    if disk_full(exc):
        return InsufficientStorage(DISK_FULL_MESSAGE, retry_after_s=DISK_FULL_RETRY_AFTER_S)
    return None


@functools.cache
def _disk_full_errors() -> tuple[type[BaseException], ...]:
    try:  # the service's SQLite driver; the typed client (which imports this module) does not need it
        import apsw
    except ImportError:
        return ()
    return (apsw.FullError,)


def disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or what it wraps, is a write refused for want of space: SQLITE_FULL, or ENOSPC / EDQUOT."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, _disk_full_errors()) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
            return True
        exc, seen = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__, seen + 1
    return False


@functools.cache
def _library_errors() -> dict[type[BaseException], type[ApiError]]:
    # Imported on first use: this module is also the typed client's, which needs neither.
    import pydantic
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import BackPressureError

    return {pydantic.ValidationError: InvalidRequest, RayActorError: ServiceUnavailable, BackPressureError: Overloaded}


def to_api_error(exc: BaseException) -> ApiError:
    """The API error `exc` is answered with: an ApiError as it is, else the one it declares, else a library
    error by type (invalid input, a dead Ray actor); anything else is logged and answered as a 500."""
    cause = root_cause(exc)
    if isinstance(cause, ApiError):
        return cause
    declared = declared_api_error(exc)
    if declared is not None:
        return declared
    for kind, api_error in _library_errors().items():
        if isinstance(cause, kind) or isinstance(exc, kind):
            if api_error is Overloaded:
                return Overloaded("the service is at capacity; retry shortly", retry_after_s=OVERLOAD_RETRY_AFTER_S)
            return api_error(_first_line(cause) or api_error.code)
    logging.getLogger("ray.serve").error("unhandled error: %r", exc)
    return ApiError("internal error")


def _first_line(exc) -> str:
    return public_message(str(exc))


# What Ray puts in front of a remote error's text: its task header ("ray::StreamWorker.push_frame() (pid=12,
# ip=10.0.0.1, actor_id=...)") and a traceback, the error's own line last. Process ids, addresses and our
# code's layout: never answered.
_RAY_HEADER = re.compile(r"ray::\S*(?:\s*\([^)]*\))?:?\s*")
_TRACEBACK = re.compile(r"^\s*(Traceback \(most recent call last\)|File \")", re.M)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # Ray colours its task header for terminals
_ERROR_TYPE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)(?:\([^)]*\))?:\s*")


def public_message(text: str) -> str:
    """An error's text fit for a client: one line, without Ray's task header or a traceback (a remote error's
    text gives its last line, the error's own, without the exception's type)."""
    text = _ANSI.sub("", str(text))
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    if _RAY_HEADER.match(lines[0].strip()) or _TRACEBACK.search(text):
        line = _ERROR_TYPE.sub("", lines[-1].strip()) if len(lines) > 1 else ""
    else:
        line = lines[0]
    return _RAY_HEADER.sub("", line).strip()


def root_cause(exc: BaseException) -> BaseException:
    """Ray wraps a replica's exception (RayTaskError and friends); find the ApiError inside, if any."""
    seen = 0
    while seen < 8 and not isinstance(exc, ApiError):
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or inner is exc:
            break
        exc, seen = inner, seen + 1
    return exc
