"""The exceptions of securegate.client: one class per stable error code of the API (securegate/errors.py), and
`error_from_response`, which picks the class of an error answer by its code, else by its HTTP status."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from securegate import errors

class SecureGateError(Exception):
    """An error answer of SecureGate (or no answer at all, see `SecureGateConnectionError`)."""

    def __init__(self, status: int | None, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status is not None else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, message={self.message!r}, details={self.details!r})"

    @property
    def retry_after_s(self) -> float | None:
        """Seconds the server asked the caller to wait (`rate_limited`, `overloaded`): from the body, else the
        Retry-After header (seconds; its HTTP-date form is not used by SecureGate)."""
        value = self.details.get("retry_after_s", self.details.get("retry_after"))
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None


class SecureGateConnectionError(SecureGateError):
    """The request got no HTTP answer (connection refused, TLS failure, timeout)."""


class InvalidRequestError(SecureGateError):
    """400: the request does not match the schema (`invalid_request`), or its image is unusable; also 405
    `method_not_allowed` and 414 `uri_too_long` (a request this client should not have sent)."""


class InvalidImageError(InvalidRequestError):
    """400 `invalid_image`: undecodable or empty image, bad base64."""


class AuthenticationError(SecureGateError):
    """401 `unauthenticated`: missing, unknown or revoked API key."""


class PermissionDeniedError(SecureGateError):
    """403 `forbidden`: a valid credential without the right (e.g. a tenant key on an admin endpoint)."""


class NotFoundError(SecureGateError):
    """404 `not_found`: unknown person, face or tenant."""


class ConflictError(SecureGateError):
    """409 `conflict`: e.g. a duplicate `external_id`."""


class SamePersonError(ConflictError):
    """409 `same_person`: a merge into the same person, a face moved to its own person, a person's own face
    given as their rejection."""


class NoKeptCropsError(ConflictError):
    """409 `no_kept_crops`: a model migration refused; the message says why (no kept enrolment crops)."""


class PayloadTooLargeError(SecureGateError):
    """413 `payload_too_large`: the body is over the server's limit."""


class ImageTooLargeError(PayloadTooLargeError):
    """413 `image_too_large`: too many pixels, refused from the image header."""


class UnprocessableError(SecureGateError):
    """422: a valid request whose image does not meet the operation's preconditions."""


class NoFaceError(UnprocessableError):
    """422 `no_face`."""


class MultipleFacesError(UnprocessableError):
    """422 `multiple_faces`: pass `face_index` (details["faces"] lists the boxes, largest first)."""


class LowQualityError(UnprocessableError):
    """422 `low_quality`: details["reasons"] lists the failed quality gates."""


class ModelMismatchError(UnprocessableError):
    """422 `model_mismatch`: the tenant is bound to another model than the one this deployment serves."""


class RateLimitedError(SecureGateError):
    """429 `rate_limited`: retry after `retry_after_s` seconds (from the body, else the Retry-After header)."""


class ServerError(SecureGateError):
    """5xx that is not a dependency outage."""


class CorruptRecordError(ServerError):
    """500 `corrupt_record`: a stored record failed authentication; the tenant fails closed."""


class ServiceUnavailableError(SecureGateError):
    """503 `unavailable`, `kms_unavailable`, `not_ready`: a dependency is down; `overloaded`: the service is at
    capacity (`retry_after_s`; the client retries it, see securegate/client_retry.py). Nothing was written."""


class InsufficientStorageError(SecureGateError):
    """507 `insufficient_storage`: the server's data disk is full; nothing was stored. Retry after
    `retry_after_s`, once its operator has freed space (writes resume without a restart)."""


# Keyed by the server's own error classes, so a code can only be spelled one way (securegate/errors.py).
_BY_CODE: dict[str, type[SecureGateError]] = {
    errors.InvalidRequest.code: InvalidRequestError,
    errors.InvalidImage.code: InvalidImageError,
    errors.Unauthenticated.code: AuthenticationError,
    errors.Forbidden.code: PermissionDeniedError,
    errors.NotFound.code: NotFoundError,
    errors.MethodNotAllowed.code: InvalidRequestError,
    errors.Conflict.code: ConflictError,
    errors.SamePerson.code: SamePersonError,
    errors.NoKeptCrops.code: NoKeptCropsError,
    errors.PayloadTooLarge.code: PayloadTooLargeError,
    errors.ImageTooLarge.code: ImageTooLargeError,
    errors.UriTooLong.code: InvalidRequestError,
    errors.UnsupportedMediaType.code: InvalidRequestError,
    errors.NoFace.code: NoFaceError,
    errors.MultipleFaces.code: MultipleFacesError,
    errors.LowQuality.code: LowQualityError,
    errors.ModelMismatch.code: ModelMismatchError,
    errors.RateLimited.code: RateLimitedError,
    errors.CorruptRecord.code: CorruptRecordError,
    errors.ApiError.code: ServerError,  # internal
    errors.KmsUnavailable.code: ServiceUnavailableError,
    errors.ServiceUnavailable.code: ServiceUnavailableError,
    errors.NotReady.code: ServiceUnavailableError,
    errors.Overloaded.code: ServiceUnavailableError,
    errors.InsufficientStorage.code: InsufficientStorageError,
}
# When the body carries no SecureGate error (a proxy's page, a framework default): code and class by status.
_BY_STATUS: dict[int, tuple[str, type[SecureGateError]]] = {
    400: ("invalid_request", InvalidRequestError),
    401: ("unauthenticated", AuthenticationError),
    403: ("forbidden", PermissionDeniedError),
    404: ("not_found", NotFoundError),
    405: ("method_not_allowed", InvalidRequestError),
    409: ("conflict", ConflictError),
    413: ("payload_too_large", PayloadTooLargeError),
    414: ("uri_too_long", InvalidRequestError),
    415: ("unsupported_media_type", InvalidRequestError),
    422: ("invalid_request", UnprocessableError),
    429: ("rate_limited", RateLimitedError),
    500: ("internal", ServerError),
    502: ("unavailable", ServiceUnavailableError),
    503: ("unavailable", ServiceUnavailableError),
    504: ("unavailable", ServiceUnavailableError),
    507: ("insufficient_storage", InsufficientStorageError),
}


def error_from_response(response: httpx.Response) -> SecureGateError:
    """The `SecureGateError` (subclass) for an error answer; the code is always set."""
    status = response.status_code
    default_code, default_cls = _BY_STATUS.get(
        status, (f"http_{status}", ServerError if status >= 500 else SecureGateError))
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        code, message = error["code"], str(error.get("message", ""))
        cls = _BY_CODE.get(code, default_cls)
    else:
        code, cls, details = default_code, default_cls, {}
        if isinstance(body, dict) and "detail" in body:  # a framework default, e.g. an unrouted path
            message, details = str(body["detail"]), {"detail": body["detail"]}
        else:
            message = response.text[:500] or response.reason_phrase
    if "retry-after" in response.headers and "retry_after_s" not in details:
        details["retry_after"] = response.headers["retry-after"]
    return cls(status, code, message, details)


def error_from_stream_end(data: str) -> SecureGateError:
    """The error an event stream ended with (`event: error`, its data our error body): the stream's API key no
    longer holds (rotated away: `AuthenticationError`; its tenant deleted: `NotFoundError`)."""
    try:
        error = json.loads(data)["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return SecureGateError(None, "invalid_response", f"an event stream ended with an unreadable error: {data[:200]}")
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    return _BY_CODE.get(code, SecureGateError)(None, code, message, details)
