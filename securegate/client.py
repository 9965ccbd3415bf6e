"""A small typed HTTP client for SecureGate (sync, on httpx).

    from securegate.client import SecureGateClient, NoFaceError

    with SecureGateClient("https://securegate.example", api_key="sg_…") as sg:
        person = sg.create_person(external_id="alice")
        sg.enrol_face(person.person_id, "alice_1.jpg")          # a path, or the file's bytes
        found = sg.search("alice_2.jpg", top_k=3)
        print(found.faces[0].matches[0].external_id)            # alice

Every endpoint of the HTTP API has one method. Images are given as bytes or as a file path (a `str` is a
path, never base64: encoding is the client's job). Answers come back as the API's own response models,
the pydantic classes of `securegate/schemas.py` that the server validates its answers with (one definition
per API type, named as in the OpenAPI document); unknown extra fields in an answer are ignored, so a newer
server does not break an older client.

Failures raise `SecureGateError` (or a subclass chosen by the error code, else by the HTTP status) with
`.status`, `.code`, `.message` and `.details` (the error body's other fields, e.g. `reasons` of
`low_quality`, `faces` of `multiple_faces`). `.code` is always set: the server's stable code when the
body carries one, else one derived from the status; a request that never got an answer raises
`SecureGateConnectionError` with code `connection_error` or `timeout` (status None), and an answer that does
not match its schema raises `SecureGateError` with code `invalid_response`. Every code of
`securegate/errors.py` has its class here (`tests/test_client.py` walks that module).

Tenant endpoints use `api_key`, admin endpoints `admin_token`; either may be omitted (the server then
answers `unauthenticated`). TLS/mTLS: `verify` (CA bundle path, `ssl.SSLContext` or bool) and `cert`
(client certificate, or (cert, key)) are passed to httpx as they are; `transport` replaces httpx's.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pydantic

from securegate import errors
from securegate.schemas import (
    ApiKeyCreated,
    AuditEvent,
    AuditPage,
    DetectResponse,
    EmbeddedFace,
    EmbedResponse,
    Face,
    FaceEnrolled,
    FaceMoved,
    FaceSummary,
    Health,
    ImportedItem,
    ImportRefusal,
    ImportResponse,
    KeyCache,
    KeyRotation,
    KeyStatus,
    MigrationStatus,
    ModelInfo,
    PersonCreated,
    PersonPage,
    PersonsMerged,
    PersonView,
    Readiness,
    RejectionList,
    RejectionsAdded,
    RejectionView,
    RootKeyRotation,
    SearchedFace,
    SearchMatch,
    SearchResponse,
    TenantCreated,
    TenantView,
    VerifyResponse,
)

__all__ = [
    "SecureGateClient",
    # results: the response models of securegate/schemas.py, re-exported
    "Face", "ModelInfo", "EmbeddedFace", "EmbedResponse", "VerifyResponse", "SearchMatch", "SearchedFace",
    "SearchResponse", "FaceSummary", "PersonView", "PersonPage", "PersonCreated", "FaceEnrolled", "TenantCreated",
    "TenantView", "ApiKeyCreated", "RootKeyRotation", "KeyRotation", "KeyCache", "KeyStatus", "MigrationStatus", "AuditEvent",
    "AuditPage", "Health", "Readiness", "ImportResponse", "ImportedItem", "ImportRefusal", "RejectionsAdded",
    "RejectionList", "RejectionView", "PersonsMerged", "FaceMoved",
    # errors
    "SecureGateError", "SecureGateConnectionError", "InvalidRequestError", "InvalidImageError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError", "SamePersonError", "NoKeptCropsError", "PayloadTooLargeError",
    "ImageTooLargeError", "UnprocessableError", "NoFaceError", "MultipleFacesError", "LowQualityError",
    "ModelMismatchError", "RateLimitedError", "ServerError", "CorruptRecordError", "ServiceUnavailableError",
    "InsufficientStorageError",
]

ImageInput = bytes | bytearray | memoryview | str | os.PathLike


# ============================================================================================== errors
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

    @property
    def retry_after_s(self) -> float | None:
        value = self.details.get("retry_after_s", self.details.get("retry_after"))
        try:
            return float(value) if value is not None else None
        except (TypeError, ValueError):
            return None


class ServerError(SecureGateError):
    """5xx that is not a dependency outage."""


class CorruptRecordError(ServerError):
    """500 `corrupt_record`: a stored record failed authentication; the tenant fails closed."""


class ServiceUnavailableError(SecureGateError):
    """503 `unavailable`, `kms_unavailable`, `not_ready`: a dependency is down; `overloaded`: the service is at
    capacity (`details["retry_after_s"]`). Nothing was written. Retry."""


class InsufficientStorageError(SecureGateError):
    """507 `insufficient_storage`: the server's data disk is full; nothing was stored. Retry after
    `details["retry_after_s"]`, once its operator has freed space (writes resume without a restart)."""


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


# ============================================================================================== client
class SecureGateClient:
    """Synchronous client for one SecureGate deployment. Thread-safe as httpx.Client is; use as a context
    manager or call `close()`."""

    def __init__(self, base_url: str, api_key: str | None = None, admin_token: str | None = None, timeout: float = 60, *,
                 transport: httpx.BaseTransport | None = None, verify: Any = True, cert: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.admin_token = admin_token
        kwargs: dict[str, Any] = {"base_url": self.base_url, "timeout": timeout, "verify": verify,
                                  "headers": {"User-Agent": "securegate-client/0.1", **(headers or {})}}
        if transport is not None:
            kwargs["transport"] = transport
        if cert is not None:
            kwargs["cert"] = cert
        self._http = httpx.Client(**kwargs)

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SecureGateClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SecureGateClient({self.base_url!r})"

    # ---- stateless: no credentials ---------------------------------------------------------------------
    def detect(self, image: ImageInput, max_faces: int | None = None) -> list[Face]:
        """Faces in the image, largest first."""
        return self._request("POST", "/v1/detect", DetectResponse,
                             json=_drop_none(image=_b64(image), max_faces=max_faces)).faces

    def embed(self, image: ImageInput, max_faces: int | None = None) -> EmbedResponse:
        """Each face's unit-length embedding, with the model that produced them."""
        return self._request("POST", "/v1/embed", EmbedResponse, json=_drop_none(image=_b64(image), max_faces=max_faces))

    def verify(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None) -> VerifyResponse:
        """The largest face of each image: cosine similarity against the threshold (default: the model pack's).
        The answer is truthy when the faces match."""
        return self._request("POST", "/v1/verify", VerifyResponse,
                             json=_drop_none(image_a=_b64(image_a), image_b=_b64(image_b), threshold=threshold))

    # ---- a tenant's gallery (api_key) --------------------------------------------------------------------
    def verify_person(self, image: ImageInput, person_id: str, threshold: float | None = None) -> VerifyResponse:
        """The image's largest face against an enrolled person (their faces or centroid, per tenant setting)."""
        return self._request("POST", "/v1/verify", VerifyResponse, auth=self.api_key,
                             json=_drop_none(image=_b64(image), person_id=person_id, threshold=threshold))

    def search(self, image: ImageInput, threshold: float | None = None, top_k: int = 1,
               max_faces: int | None = None) -> SearchResponse:
        """Every face of the image searched in the tenant's gallery; each face's matches best first, empty
        when nothing reaches the threshold."""
        return self._request("POST", "/v1/search", SearchResponse, auth=self.api_key,
                             json=_drop_none(image=_b64(image), threshold=threshold, top_k=top_k, max_faces=max_faces))

    def create_person(self, external_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> PersonCreated:
        return self._request("POST", "/v1/persons", PersonCreated, auth=self.api_key,
                             json=_drop_none(external_id=external_id, metadata=dict(metadata) if metadata is not None else None))

    def list_persons(self, limit: int = 50, cursor: str | None = None) -> PersonPage:
        """One page of persons; pass `next_cursor` back for the next one (None on the last page)."""
        return self._request("GET", "/v1/persons", PersonPage, auth=self.api_key, params=_drop_none(limit=limit, cursor=cursor))

    def iter_persons(self, page_size: int = 100) -> Iterator[PersonView]:
        """Every person of the tenant, following cursors page by page."""
        cursor = None
        while True:
            page = self.list_persons(limit=page_size, cursor=cursor)
            yield from page.persons
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_person(self, person_id: str) -> PersonView:
        return self._request("GET", f"/v1/persons/{_seg(person_id)}", PersonView, auth=self.api_key)

    def delete_person(self, person_id: str) -> None:
        """The person and every face of theirs; nothing of them stays in the tenant's file."""
        self._request("DELETE", f"/v1/persons/{_seg(person_id)}", auth=self.api_key)

    def enrol_face(self, person_id: str, image: ImageInput, face_index: int | None = None) -> FaceEnrolled:
        """One face of the image becomes a reference face of the person (quality gates apply). With several
        faces in the image, `face_index` picks one (largest first)."""
        return self._request("POST", f"/v1/persons/{_seg(person_id)}/faces", FaceEnrolled, auth=self.api_key,
                             json=_drop_none(image=_b64(image), face_index=face_index))

    def import_faces(self, items: Sequence[Mapping[str, Any]]) -> ImportResponse:
        """Bulk import: many photos in one call, each `{"external_id", "image", "metadata"?}` (image: bytes or a
        path; at most schemas.IMPORT_MAX_ITEMS). Persons are found or created by external id; a photo already
        enrolled for its person is `skipped`; refused photos come back per item with their error, not raised."""
        body = [_drop_none(external_id=item["external_id"], image=_b64(item["image"]),
                           metadata=dict(item["metadata"]) if item.get("metadata") is not None else None) for item in items]
        return self._request("POST", "/v1/persons/import", ImportResponse, auth=self.api_key, json={"items": body})

    def delete_face(self, person_id: str, face_id: str) -> None:
        self._request("DELETE", f"/v1/persons/{_seg(person_id)}/faces/{_seg(face_id)}", auth=self.api_key)

    # ---- corrections ----------------------------------------------------------------------------------------
    def reject(self, person_id: str, image: ImageInput | None = None, face_index: int | None = None,
               face_id: str | None = None, unknown_id: str | None = None) -> RejectionsAdded:
        """"Not this person": one of `image` (its face, `face_index` for one of several), `face_id` (an enrolled
        face of another person) or `unknown_id` (an anonymous id from camera events) becomes a negative example
        of the person; a probe closer to it than to all of the person's faces no longer matches them."""
        return self._request("POST", f"/v1/persons/{_seg(person_id)}/rejections", RejectionsAdded, auth=self.api_key,
                             json=_drop_none(image=_b64(image) if image is not None else None, face_index=face_index,
                                             face_id=face_id, unknown_id=unknown_id))

    def list_rejections(self, person_id: str) -> RejectionList:
        return self._request("GET", f"/v1/persons/{_seg(person_id)}/rejections", RejectionList, auth=self.api_key)

    def delete_rejection(self, person_id: str, rejection_id: str) -> None:
        self._request("DELETE", f"/v1/persons/{_seg(person_id)}/rejections/{_seg(rejection_id)}", auth=self.api_key)

    def merge_persons(self, person_id: str, merged_person_id: str) -> PersonsMerged:
        """`merged_person_id` is absorbed into `person_id` (faces, rejections and camera events move; the merged id
        answers 404 afterwards)."""
        return self._request("POST", f"/v1/persons/{_seg(person_id)}/merge", PersonsMerged, auth=self.api_key,
                             json={"merged_person_id": merged_person_id})

    def move_face(self, person_id: str, face_id: str, to_person_id: str) -> FaceMoved:
        """A face enrolled to the wrong person becomes `to_person_id`'s."""
        return self._request("POST", f"/v1/persons/{_seg(person_id)}/faces/{_seg(face_id)}/move", FaceMoved,
                             auth=self.api_key, json={"to_person_id": to_person_id})

    def audit(self, since: int = 0, limit: int = 100) -> AuditPage:
        """The tenant's audit events after sequence number `since`, oldest first."""
        return self._request("GET", "/v1/audit", AuditPage, auth=self.api_key, params={"since": since, "limit": limit})

    def iter_audit(self, since: int = 0, page_size: int = 100) -> Iterator[AuditEvent]:
        """Every audit event after `since`, page by page."""
        while True:
            page = self.audit(since=since, limit=page_size)
            yield from page.events
            if len(page.events) < page_size:
                return
            since = page.next_since

    # ---- admin (admin_token) -------------------------------------------------------------------------------
    def create_tenant(self, name: str, settings: Mapping[str, Any] | None = None) -> TenantCreated:
        """A new tenant bound to the deployment's model, with its first API key (shown only here)."""
        return self._request("POST", "/v1/tenants", TenantCreated, auth=self.admin_token,
                             json=_drop_none(name=name, settings=dict(settings) if settings is not None else None))

    def list_tenants(self) -> list[TenantView]:
        return self._request("GET", "/v1/tenants", _TENANT_LIST, auth=self.admin_token)

    def get_tenant(self, tenant_id: str) -> TenantView:
        return self._request("GET", f"/v1/tenants/{_seg(tenant_id)}", TenantView, auth=self.admin_token)

    def update_tenant(self, tenant_id: str, settings: Mapping[str, Any]) -> TenantView:
        """Merges `settings` into the tenant's (`quality` is merged key by key)."""
        return self._request("PATCH", f"/v1/tenants/{_seg(tenant_id)}", TenantView, auth=self.admin_token,
                             json={"settings": dict(settings)})

    def delete_tenant(self, tenant_id: str) -> None:
        """Crypto-shreds the tenant: its keys are destroyed and its files removed. Irreversible."""
        self._request("DELETE", f"/v1/tenants/{_seg(tenant_id)}", auth=self.admin_token)

    def rotate_api_key(self, tenant_id: str) -> ApiKeyCreated:
        """A new API key for the tenant; every older key of the tenant is revoked at once."""
        return self._request("POST", f"/v1/tenants/{_seg(tenant_id)}/api-keys", ApiKeyCreated, auth=self.admin_token)

    def rotate_root_key(self) -> RootKeyRotation:
        """Every tenant key-encryption key re-wrapped under a new org root key (records untouched)."""
        return self._request("POST", "/v1/admin/keys/rotate-root", RootKeyRotation, auth=self.admin_token)

    def rotate_tenant_key(self, tenant_id: str) -> KeyRotation:
        """Starts (or reports, when one is running) a content-key rotation of the tenant; records are re-encrypted
        in the background (`state` running → done). See `key_status`."""
        return self._request("POST", f"/v1/tenants/{_seg(tenant_id)}/keys/rotate", KeyRotation, auth=self.admin_token)

    def migrate_tenant(self, tenant_id: str, to: str, *, batch_size: int = 64, hold: bool = False,
                       pause_s: float = 0.0) -> MigrationStatus:
        """Starts a model migration of the tenant onto pack `to` (its kept crops re-embedded into a shadow index,
        then an atomic switch; `hold` waits before the switch, call again with hold False to switch)."""
        return self._request("POST", f"/v1/admin/tenants/{_seg(tenant_id)}/migrate", MigrationStatus,
                             auth=self.admin_token, json={"to": to, "batch_size": batch_size, "hold": hold, "pause_s": pause_s})

    def migration_status(self, tenant_id: str) -> MigrationStatus:
        """The tenant's latest model migration: state, faces re-embedded of total, crops/s."""
        return self._request("GET", f"/v1/admin/tenants/{_seg(tenant_id)}/migrate", MigrationStatus, auth=self.admin_token)

    def key_status(self) -> KeyStatus:
        """The provider, root key, each tenant's key versions and latest content-key rotation."""
        return self._request("GET", "/v1/admin/keys/status", KeyStatus, auth=self.admin_token)

    # ---- health ------------------------------------------------------------------------------------------------
    def healthz(self) -> Health:
        """The process is up."""
        return self._request("GET", "/v1/healthz", Health)

    def readyz(self) -> Readiness:
        """Models loaded and key provider reachable; raises `ServiceUnavailableError` (`not_ready`) otherwise."""
        return self._request("GET", "/v1/readyz", Readiness)

    # ---- plumbing ------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, answer: type[pydantic.BaseModel] | pydantic.TypeAdapter | None = None, *,
                 auth: str | None = None, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """The answer validated as `answer` (a response model of securegate/schemas.py), or None without one."""
        headers = {"Authorization": f"Bearer {auth}"} if auth else None
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise SecureGateConnectionError(None, "timeout", f"{method} {path}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise SecureGateConnectionError(None, "connection_error", f"{method} {path}: {exc!r}") from exc
        if response.is_error:
            raise error_from_response(response)
        if answer is None:
            return None
        try:
            if isinstance(answer, pydantic.TypeAdapter):
                return answer.validate_json(response.content)
            return answer.model_validate_json(response.content)
        except pydantic.ValidationError as exc:  # another server version, or not SecureGate at all
            raise SecureGateError(response.status_code, "invalid_response",
                                  f"{method} {path}: the answer does not match its schema: {exc}") from exc


_TENANT_LIST = pydantic.TypeAdapter(list[TenantView])


def _b64(image: ImageInput) -> str:
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
    else:
        raise TypeError(f"an image is bytes or a file path, not {type(image).__name__}")
    return base64.b64encode(data).decode("ascii")


def _seg(value: str) -> str:
    """One URL path segment: ids never contain '/', but a caller's typo must not reach another route."""
    from urllib.parse import quote

    return quote(str(value), safe="")


def _drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
