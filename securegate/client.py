"""A small typed HTTP client for SecureGate (sync, on httpx).

    from securegate.client import SecureGateClient, NoFaceError

    with SecureGateClient("https://securegate.example", api_key="sg_…") as sg:
        person = sg.create_person(external_id="alice")
        sg.enrol_face(person.person_id, "alice_1.jpg")          # a path, or the file's bytes
        found = sg.search("alice_2.jpg", top_k=3)
        print(found.faces[0].matches[0].external_id)            # alice

Every route of the HTTP API has a method, marked with `@route("METHOD /path")` (tests/test_client_routes.py
walks the app's OpenAPI document and fails on a route without one). Images are given as bytes or as a file
path (a `str` is a path, never base64: encoding is the client's job). Answers come back as the API's own
response models, the pydantic classes of `securegate/schemas.py` and `securegate/stream_schemas.py` that the
server validates its answers with (one definition per API type, named as in the OpenAPI document); unknown
extra fields in an answer are ignored, so a newer server does not break an older client. Camera events
arrive as they happen through `stream_events` (Server-Sent Events, securegate/client_events.py); an edge
device pushes JPEG frames with `push_frame`.

Failures raise `SecureGateError` (or a subclass chosen by the error code, else by the HTTP status) with
`.status`, `.code`, `.message` and `.details` (the error body's other fields, e.g. `reasons` of
`low_quality`, `faces` of `multiple_faces`). `.code` is always set: the server's stable code when the
body carries one, else one derived from the status; a request that never got an answer raises
`SecureGateConnectionError` with code `connection_error` or `timeout` (status None), and an answer that does
not match its schema raises `SecureGateError` with code `invalid_response`. Every code of
`securegate/errors.py` has its class (securegate/client_errors.py; `tests/test_client.py` walks that module).
An `overloaded` answer (503, nothing was done) is retried after its Retry-After with bounded backoff
(`retry=`, securegate/client_retry.py; `retry=None` never retries).

Tenant endpoints use `api_key`, admin endpoints `admin_token` (the bootstrap token or an admin key); either may
be omitted (the server then answers `unauthenticated`). TLS/mTLS: `verify` (CA bundle path, `ssl.SSLContext` or
bool) and `cert` (client certificate, or (cert, key)) are passed to httpx as they are; `transport` replaces
httpx's.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx
import pydantic

from securegate.client_errors import (
    AuthenticationError, ConflictError, CorruptRecordError, ImageTooLargeError, InsufficientStorageError,
    InvalidImageError, InvalidRequestError, LowQualityError, ModelMismatchError, MultipleFacesError, NoFaceError,
    NoKeptCropsError, NotFoundError,
    PayloadTooLargeError, PermissionDeniedError, RateLimitedError, SamePersonError, SecureGateConnectionError,
    SecureGateError, ServerError, ServiceUnavailableError, UnprocessableError, error_from_response,
)
from securegate.client_encoding import RAW_IMAGE, ImageInput, drop_none, follow_pages, image_b64, image_bytes, segment
from securegate.client_events import EventStream
from securegate.client_http import ApiSession
from securegate.client_retry import RetryPolicy
from securegate.schemas import (
    AdminKeyCreated, AdminKeyList, AdminKeyView, ApiKeyCreated, AuditEvent, AuditPage, AuditVerification,
    DetectResponse, EmbeddedFace, ErasureReceipt, EmbedResponse, Face, FaceEnrolled, FaceMoved, FaceSummary, Health, ImportedItem,
    ImportRefusal, ImportResponse, KeyCache, KeyRotation, KeyStatus, MigrationStatus, ModelInfo, OrgAuditEvent,
    OrgAuditPage, PersonCreated, PersonPage, PersonsMerged, PersonView, Readiness, RejectionList, RejectionsAdded,
    RejectionView, RootKeyRotation, SearchedFace, SearchMatch, SearchResponse, ShardPlacement, SigningKeys, TenantCreated,
    TenantPlacement, TenantView, VerifyResponse,
)
from securegate.stream_schemas import (
    Attendance, AttendanceRow, Delivery, DeliveryList, Event, EventPage, FrameAccepted, Promoted, StreamList,
    StreamStatus, StreamView, Unknown, UnknownList, WebhookCreated, WebhookList, WebhookView,
)

__all__ = [
    "SecureGateClient", "RetryPolicy", "EventStream", "route",
    # results: the response models of securegate/schemas.py and stream_schemas.py, re-exported
    "Face", "ModelInfo", "EmbeddedFace", "EmbedResponse", "VerifyResponse", "SearchMatch", "SearchedFace",
    "SearchResponse", "FaceSummary", "PersonView", "PersonPage", "PersonCreated", "FaceEnrolled", "TenantCreated",
    "TenantView", "TenantPlacement", "ShardPlacement", "ApiKeyCreated", "RootKeyRotation", "KeyRotation", "KeyCache", "KeyStatus", "MigrationStatus", "AuditEvent",
    "AuditPage", "Health", "Readiness", "ImportResponse", "ImportedItem", "ImportRefusal", "RejectionsAdded",
    "RejectionList", "RejectionView", "PersonsMerged", "FaceMoved", "AdminKeyCreated", "AdminKeyList", "AdminKeyView",
    "AuditVerification", "OrgAuditEvent", "OrgAuditPage", "ErasureReceipt", "SigningKeys",
    "StreamView", "StreamStatus", "StreamList", "FrameAccepted", "Event", "EventPage", "Attendance", "AttendanceRow",
    "Unknown", "UnknownList", "Promoted", "WebhookCreated", "WebhookView", "WebhookList", "Delivery", "DeliveryList",
    # errors (securegate/client_errors.py)
    "SecureGateError", "SecureGateConnectionError", "InvalidRequestError", "InvalidImageError",
    "AuthenticationError", "PermissionDeniedError", "NotFoundError", "ConflictError", "SamePersonError", "NoKeptCropsError", "PayloadTooLargeError",
    "ImageTooLargeError", "UnprocessableError", "NoFaceError", "MultipleFacesError", "LowQualityError",
    "ModelMismatchError", "RateLimitedError", "ServerError", "CorruptRecordError", "ServiceUnavailableError",
    "InsufficientStorageError", "error_from_response",
]

EventKind = Literal["person_seen", "unknown_seen"]
DeliveryState = Literal["pending", "delivered", "dead", "dropped"]
F = TypeVar("F", bound=Callable[..., Any])


def route(endpoint: str) -> Callable[[F], F]:
    """Marks the method that calls `endpoint` ("METHOD /path" as in the OpenAPI document)."""

    def mark(method: F) -> F:
        method.route = endpoint
        return method

    return mark


class SecureGateClient:
    """Synchronous client for one SecureGate deployment. Thread-safe as httpx.Client is; use as a context
    manager or call `close()`."""

    def __init__(self, base_url: str, api_key: str | None = None, admin_token: str | None = None, timeout: float = 60, *,
                 retry: RetryPolicy | None = RetryPolicy(), transport: httpx.BaseTransport | None = None,
                 verify: Any = True, cert: Any = None, headers: Mapping[str, str] | None = None,
                 raw_images: bool = True) -> None:
        """`raw_images`: detect, embed and search send the image as the request body (its options in the query
        string); False sends the JSON form, base64 in the body (servers before the raw form)."""
        self.base_url = base_url.rstrip("/")
        self.raw_images = raw_images
        self.api_key = api_key
        self.admin_token = admin_token
        kwargs: dict[str, Any] = {"base_url": self.base_url, "timeout": timeout, "verify": verify,
                                  "headers": {"User-Agent": "securegate-client/0.1", **(headers or {})}}
        if transport is not None:
            kwargs["transport"] = transport
        if cert is not None:
            kwargs["cert"] = cert
        self._http = httpx.Client(**kwargs)
        self._session = ApiSession(self._http, retry)

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
    @route("POST /v1/detect")
    def detect(self, image: ImageInput, max_faces: int | None = None) -> list[Face]:
        """Faces in the image, largest first."""
        return self._upload("/v1/detect", DetectResponse, image, None, max_faces=max_faces).faces

    @route("POST /v1/embed")
    def embed(self, image: ImageInput, max_faces: int | None = None) -> EmbedResponse:
        """Each face's unit-length embedding, with the model that produced them."""
        return self._upload("/v1/embed", EmbedResponse, image, None, max_faces=max_faces)

    @route("POST /v1/verify")
    def verify(self, image_a: ImageInput, image_b: ImageInput, threshold: float | None = None) -> VerifyResponse:
        """The largest face of each image: cosine similarity against the threshold (default: the model pack's).
        The answer is truthy when the faces match."""
        return self._session.request("POST", "/v1/verify", VerifyResponse,
                             json=drop_none(image_a=image_b64(image_a), image_b=image_b64(image_b), threshold=threshold))

    # ---- a tenant's gallery (api_key) --------------------------------------------------------------------
    @route("POST /v1/verify")
    def verify_person(self, image: ImageInput, person_id: str, threshold: float | None = None) -> VerifyResponse:
        """The image's largest face against an enrolled person (their faces or centroid, per tenant setting)."""
        return self._session.request("POST", "/v1/verify", VerifyResponse, auth=self.api_key,
                             json=drop_none(image=image_b64(image), person_id=person_id, threshold=threshold))

    @route("POST /v1/search")
    def search(self, image: ImageInput, threshold: float | None = None, top_k: int = 1,
               max_faces: int | None = None) -> SearchResponse:
        """Every face of the image searched in the tenant's gallery; each face's matches best first, empty
        when nothing reaches the threshold."""
        return self._upload("/v1/search", SearchResponse, image, self.api_key, threshold=threshold, top_k=top_k,
                            max_faces=max_faces)

    def _upload(self, path: str, answer, image: ImageInput, auth: str | None, **options: Any):
        """One image and its options, in the raw form (the image is the body) or the JSON form (`raw_images`)."""
        if self.raw_images:
            return self._session.request("POST", path, answer, auth=auth, content=image_bytes(image),
                                         params=drop_none(**options), headers=RAW_IMAGE)
        return self._session.request("POST", path, answer, auth=auth, json=drop_none(image=image_b64(image), **options))

    @route("POST /v1/persons")
    def create_person(self, external_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> PersonCreated:
        return self._session.request("POST", "/v1/persons", PersonCreated, auth=self.api_key,
                             json=drop_none(external_id=external_id, metadata=dict(metadata) if metadata is not None else None))

    @route("GET /v1/persons")
    def list_persons(self, limit: int = 50, cursor: str | None = None, external_id: str | None = None) -> PersonPage:
        """One page of persons; pass `next_cursor` back for the next one (None on the last page). With
        `external_id`: the person holding exactly that id, or an empty page."""
        return self._session.request("GET", "/v1/persons", PersonPage, auth=self.api_key,
                                     params=drop_none(limit=limit, cursor=cursor, external_id=external_id))

    def iter_persons(self, page_size: int = 100) -> Iterator[PersonView]:
        """Every person of the tenant, following cursors page by page."""
        cursor = None
        while True:
            page = self.list_persons(limit=page_size, cursor=cursor)
            yield from page.persons
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    @route("GET /v1/persons/{person_id}")
    def get_person(self, person_id: str) -> PersonView:
        return self._session.request("GET", f"/v1/persons/{segment(person_id)}", PersonView, auth=self.api_key)

    @route("DELETE /v1/persons/{person_id}")
    def delete_person(self, person_id: str) -> None:
        """The person and every face of theirs; nothing of them stays in the tenant's file."""
        self._session.request("DELETE", f"/v1/persons/{segment(person_id)}", auth=self.api_key)

    @route("POST /v1/persons/{person_id}/faces")
    def enrol_face(self, person_id: str, image: ImageInput, face_index: int | None = None) -> FaceEnrolled:
        """One face of the image becomes a reference face of the person (quality gates apply). With several
        faces in the image, `face_index` picks one (largest first)."""
        return self._upload(f"/v1/persons/{segment(person_id)}/faces", FaceEnrolled, image, self.api_key,
                            face_index=face_index)

    @route("POST /v1/persons/import")
    def import_faces(self, items: Sequence[Mapping[str, Any]]) -> ImportResponse:
        """Bulk import: many photos in one call, each `{"external_id", "image", "metadata"?}` (image: bytes or a
        path; at most schemas.IMPORT_MAX_ITEMS). Persons are found or created by external id; a photo already
        enrolled for its person is `skipped`; refused photos come back per item with their error, not raised."""
        body = [drop_none(external_id=item["external_id"], image=image_b64(item["image"]),
                           metadata=dict(item["metadata"]) if item.get("metadata") is not None else None) for item in items]
        return self._session.request("POST", "/v1/persons/import", ImportResponse, auth=self.api_key, json={"items": body})

    @route("DELETE /v1/persons/{person_id}/faces/{face_id}")
    def delete_face(self, person_id: str, face_id: str) -> None:
        self._session.request("DELETE", f"/v1/persons/{segment(person_id)}/faces/{segment(face_id)}", auth=self.api_key)

    # ---- corrections ----------------------------------------------------------------------------------------
    @route("POST /v1/persons/{person_id}/rejections")
    def reject(self, person_id: str, image: ImageInput | None = None, face_index: int | None = None,
               face_id: str | None = None, unknown_id: str | None = None) -> RejectionsAdded:
        """"Not this person": one of `image` (its face, `face_index` for one of several), `face_id` (an enrolled
        face of another person) or `unknown_id` (an anonymous id from camera events) becomes a negative example
        of the person; a probe closer to it than to all of the person's faces no longer matches them."""
        return self._session.request("POST", f"/v1/persons/{segment(person_id)}/rejections", RejectionsAdded, auth=self.api_key,
                             json=drop_none(image=image_b64(image) if image is not None else None, face_index=face_index,
                                             face_id=face_id, unknown_id=unknown_id))

    @route("GET /v1/persons/{person_id}/rejections")
    def list_rejections(self, person_id: str) -> RejectionList:
        return self._session.request("GET", f"/v1/persons/{segment(person_id)}/rejections", RejectionList, auth=self.api_key)

    @route("DELETE /v1/persons/{person_id}/rejections/{rejection_id}")
    def delete_rejection(self, person_id: str, rejection_id: str) -> None:
        self._session.request("DELETE", f"/v1/persons/{segment(person_id)}/rejections/{segment(rejection_id)}", auth=self.api_key)

    @route("POST /v1/persons/{person_id}/merge")
    def merge_persons(self, person_id: str, merged_person_id: str) -> PersonsMerged:
        """`merged_person_id` is absorbed into `person_id` (faces, rejections and camera events move; the merged id
        answers 404 afterwards)."""
        return self._session.request("POST", f"/v1/persons/{segment(person_id)}/merge", PersonsMerged, auth=self.api_key,
                             json={"merged_person_id": merged_person_id})

    @route("POST /v1/persons/{person_id}/faces/{face_id}/move")
    def move_face(self, person_id: str, face_id: str, to_person_id: str) -> FaceMoved:
        """A face enrolled to the wrong person becomes `to_person_id`'s."""
        return self._session.request("POST", f"/v1/persons/{segment(person_id)}/faces/{segment(face_id)}/move", FaceMoved,
                             auth=self.api_key, json={"to_person_id": to_person_id})

    @route("GET /v1/audit")
    def audit(self, since: int = 0, limit: int = 100) -> AuditPage:
        """The tenant's audit events after sequence number `since`, oldest first."""
        return self._session.request("GET", "/v1/audit", AuditPage, auth=self.api_key, params={"since": since, "limit": limit})

    def iter_audit(self, since: int = 0, page_size: int = 100) -> Iterator[AuditEvent]:
        """Every audit event after `since`, page by page."""
        return follow_pages(lambda after: self.audit(since=after, limit=page_size), since, page_size)

    @route("GET /v1/audit/verify")
    def verify_audit(self) -> AuditVerification:
        """The tenant's audit chain checked against its hash links and MACed checkpoints (`intact`, else where)."""
        return self._session.request("GET", "/v1/audit/verify", AuditVerification, auth=self.api_key)

    # ---- cameras (api_key) --------------------------------------------------------------------------------------
    @route("POST /v1/streams")
    def create_stream(self, name: str, url: str | None = None, *, fps: float | None = None, cooldown_s: float | None = None,
                      loop: bool | None = None, enabled: bool | None = None) -> StreamView:
        """A camera: `url` is rtsp://, http(s):// (MJPEG or a video) or a file on the server; without one, the
        camera takes pushed frames (`push_frame`). Unset settings take the server's defaults."""
        return self._session.request("POST", "/v1/streams", StreamView, auth=self.api_key, json=drop_none(
            name=name, url=url, fps=fps, cooldown_s=cooldown_s, loop=loop, enabled=enabled))

    @route("GET /v1/streams")
    def list_streams(self) -> StreamList:
        return self._session.request("GET", "/v1/streams", StreamList, auth=self.api_key)

    @route("GET /v1/streams/{stream_id}")
    def get_stream(self, stream_id: str) -> StreamView:
        """The camera with its live `status` (state, frames read, processed and dropped, lag)."""
        return self._session.request("GET", f"/v1/streams/{segment(stream_id)}", StreamView, auth=self.api_key)

    @route("PATCH /v1/streams/{stream_id}")
    def update_stream(self, stream_id: str, *, name: str | None = None, url: str | None = None, fps: float | None = None,
                      cooldown_s: float | None = None, loop: bool | None = None, enabled: bool | None = None) -> StreamView:
        """Changes the settings given (the camera's worker restarts with them)."""
        return self._session.request("PATCH", f"/v1/streams/{segment(stream_id)}", StreamView, auth=self.api_key, json=drop_none(
            name=name, url=url, fps=fps, cooldown_s=cooldown_s, loop=loop, enabled=enabled))

    @route("DELETE /v1/streams/{stream_id}")
    def delete_stream(self, stream_id: str) -> None:
        self._session.request("DELETE", f"/v1/streams/{segment(stream_id)}", auth=self.api_key)

    @route("POST /v1/streams/{stream_id}/frames")
    def push_frame(self, stream_id: str, jpeg: ImageInput, ts: float | None = None) -> FrameAccepted:
        """One JPEG frame (bytes or a path) to a camera created without a `url`; `ts` is its capture time (epoch
        seconds, default: arrival). A camera behind on its frames drops the oldest (`dropped`), never queues
        without bound."""
        return self._session.request("POST", f"/v1/streams/{segment(stream_id)}/frames", FrameAccepted, auth=self.api_key,
                                     content=image_bytes(jpeg), params=drop_none(ts=ts), headers={"Content-Type": "image/jpeg"})

    # ---- events (api_key) ----------------------------------------------------------------------------------------
    @route("GET /v1/events")
    def events(self, since: int = 0, limit: int = 100, camera: str | None = None, person: str | None = None,
               kind: EventKind | None = None) -> EventPage:
        """The tenant's camera events after `since`, oldest first; `person` is a person id or external id."""
        return self._session.request("GET", "/v1/events", EventPage, auth=self.api_key, params=drop_none(
            since=since, limit=limit, camera=camera, person=person, kind=kind))

    def iter_events(self, since: int = 0, page_size: int = 100, **filters: Any) -> Iterator[Event]:
        """Every stored event after `since` (filters as `events`), page by page; `stream_events` follows new ones."""
        return follow_pages(lambda after: self.events(since=after, limit=page_size, **filters), since, page_size)

    @route("GET /v1/events/stream")
    def stream_events(self, since: int = 0, *, last_event_id: int | None = None, max_s: float | None = None,
                      reconnect: bool = True) -> EventStream:
        """Events as they happen, over Server-Sent Events: iterate the answer in a `with` block. Starts after
        `last_event_id` (a stored `EventStream.last_event_id`) when given, else after `since`; `max_s` is how
        long the server keeps one connection (default one hour), after which the stream reconnects by itself
        unless `reconnect` is False. See securegate/client_events.py."""
        return EventStream(self._session, self.api_key, since=since, last_event_id=last_event_id, max_s=max_s,
                           reconnect=reconnect)

    @route("GET /v1/attendance")
    def attendance(self, date: str | datetime.date | None = None) -> Attendance:
        """First in and last out per person on `date` (UTC; a `date` or "YYYY-MM-DD"; default today)."""
        day = date.isoformat() if isinstance(date, datetime.date) else date
        return self._session.request("GET", "/v1/attendance", Attendance, auth=self.api_key, params=drop_none(date=day))

    @route("GET /v1/unknowns")
    def list_unknowns(self) -> UnknownList:
        """The anonymous ids of faces the cameras saw that match nobody, with their kept samples."""
        return self._session.request("GET", "/v1/unknowns", UnknownList, auth=self.api_key)

    @route("POST /v1/unknowns/{unknown_id}/promote")
    def promote_unknown(self, unknown_id: str, external_id: str | None = None,
                        metadata: Mapping[str, Any] | None = None) -> Promoted:
        """The anonymous id becomes a person: its camera samples their faces, its events theirs."""
        return self._session.request("POST", f"/v1/unknowns/{segment(unknown_id)}/promote", Promoted, auth=self.api_key,
                                     json=drop_none(external_id=external_id, metadata=dict(metadata) if metadata is not None else None))

    @route("POST /v1/webhooks")
    def create_webhook(self, url: str, kinds: Sequence[EventKind] = (), max_attempts: int | None = None) -> WebhookCreated:
        """Events of `kinds` (all when empty) POSTed to `url`, signed with the returned `secret` (shown only here);
        a delivery is retried up to `max_attempts`, then dead-lettered."""
        return self._session.request("POST", "/v1/webhooks", WebhookCreated, auth=self.api_key,
                                     json=drop_none(url=url, kinds=list(kinds), max_attempts=max_attempts))

    @route("GET /v1/webhooks")
    def list_webhooks(self) -> WebhookList:
        return self._session.request("GET", "/v1/webhooks", WebhookList, auth=self.api_key)

    @route("DELETE /v1/webhooks/{webhook_id}")
    def delete_webhook(self, webhook_id: str) -> None:
        self._session.request("DELETE", f"/v1/webhooks/{segment(webhook_id)}", auth=self.api_key)

    @route("GET /v1/webhooks/{webhook_id}/deliveries")
    def webhook_deliveries(self, webhook_id: str, state: DeliveryState | None = None, limit: int = 100) -> DeliveryList:
        """The webhook's deliveries (pending, delivered, dead or dropped), with attempts and the last error."""
        return self._session.request("GET", f"/v1/webhooks/{segment(webhook_id)}/deliveries", DeliveryList, auth=self.api_key,
                                     params=drop_none(state=state, limit=limit))

    @route("POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
    def retry_delivery(self, webhook_id: str, delivery_id: str) -> Delivery:
        """A dead letter sent again, with the webhook's attempts afresh (ConflictError for one not dead)."""
        return self._session.request("POST", f"/v1/webhooks/{segment(webhook_id)}/deliveries/{segment(delivery_id)}/retry",
                                     Delivery, auth=self.api_key)

    # ---- admin (admin_token) -------------------------------------------------------------------------------
    @route("POST /v1/tenants")
    def create_tenant(self, name: str, settings: Mapping[str, Any] | None = None) -> TenantCreated:
        """A new tenant bound to the deployment's model, with its first API key (shown only here)."""
        return self._session.request("POST", "/v1/tenants", TenantCreated, auth=self.admin_token,
                             json=drop_none(name=name, settings=dict(settings) if settings is not None else None))

    @route("GET /v1/tenants")
    def list_tenants(self) -> list[TenantView]:
        return self._session.request("GET", "/v1/tenants", _TENANT_LIST, auth=self.admin_token)

    @route("GET /v1/tenants/{tenant_id}")
    def get_tenant(self, tenant_id: str) -> TenantView:
        return self._session.request("GET", f"/v1/tenants/{segment(tenant_id)}", TenantView, auth=self.admin_token)

    @route("PATCH /v1/tenants/{tenant_id}")
    def update_tenant(self, tenant_id: str, settings: Mapping[str, Any]) -> TenantView:
        """Merges `settings` into the tenant's (`quality` is merged key by key)."""
        return self._session.request("PATCH", f"/v1/tenants/{segment(tenant_id)}", TenantView, auth=self.admin_token,
                             json={"settings": dict(settings)})

    @route("DELETE /v1/tenants/{tenant_id}")
    def delete_tenant(self, tenant_id: str) -> None:
        """Crypto-shreds the tenant: its keys are destroyed and its files removed. Irreversible."""
        self._session.request("DELETE", f"/v1/tenants/{segment(tenant_id)}", auth=self.admin_token)

    @route("POST /v1/tenants/{tenant_id}/api-keys")
    def rotate_api_key(self, tenant_id: str) -> ApiKeyCreated:
        """A new API key for the tenant; every older key of the tenant is revoked at once."""
        return self._session.request("POST", f"/v1/tenants/{segment(tenant_id)}/api-keys", ApiKeyCreated, auth=self.admin_token)

    @route("POST /v1/admin/keys/rotate-root")
    def rotate_root_key(self) -> RootKeyRotation:
        """Every tenant key-encryption key re-wrapped under a new org root key (records untouched)."""
        return self._session.request("POST", "/v1/admin/keys/rotate-root", RootKeyRotation, auth=self.admin_token)

    @route("POST /v1/tenants/{tenant_id}/keys/rotate")
    def rotate_tenant_key(self, tenant_id: str) -> KeyRotation:
        """Starts (or reports, when one is running) a content-key rotation of the tenant; records are re-encrypted
        in the background (`state` running → done). See `key_status`."""
        return self._session.request("POST", f"/v1/tenants/{segment(tenant_id)}/keys/rotate", KeyRotation, auth=self.admin_token)

    @route("POST /v1/admin/tenants/{tenant_id}/migrate")
    def migrate_tenant(self, tenant_id: str, to: str, *, batch_size: int = 64, hold: bool = False,
                       pause_s: float = 0.0) -> MigrationStatus:
        """Starts a model migration of the tenant onto pack `to` (its kept crops re-embedded into a shadow index,
        then an atomic switch; `hold` waits before the switch, call again with hold False to switch)."""
        return self._session.request("POST", f"/v1/admin/tenants/{segment(tenant_id)}/migrate", MigrationStatus,
                             auth=self.admin_token, json={"to": to, "batch_size": batch_size, "hold": hold, "pause_s": pause_s})

    @route("GET /v1/admin/tenants/{tenant_id}")
    def tenant_placement(self, tenant_id: str) -> TenantPlacement:
        """The tenant and where each of its index (shard) actors runs now: state, node id and IP, process."""
        return self._session.request("GET", f"/v1/admin/tenants/{segment(tenant_id)}", TenantPlacement, auth=self.admin_token)

    @route("GET /v1/admin/tenants/{tenant_id}/migrate")
    def migration_status(self, tenant_id: str) -> MigrationStatus:
        """The tenant's latest model migration: state, faces re-embedded of total, crops/s."""
        return self._session.request("GET", f"/v1/admin/tenants/{segment(tenant_id)}/migrate", MigrationStatus, auth=self.admin_token)

    @route("GET /v1/admin/keys/status")
    def key_status(self) -> KeyStatus:
        """The provider, root key, each tenant's key versions and latest content-key rotation."""
        return self._session.request("GET", "/v1/admin/keys/status", KeyStatus, auth=self.admin_token)

    @route("POST /v1/admin-keys")
    def create_admin_key(self, name: str, scopes: Sequence[str]) -> AdminKeyCreated:
        """A scoped admin key (`admin_key`, shown only here), with at most the calling credential's scopes."""
        return self._session.request("POST", "/v1/admin-keys", AdminKeyCreated, auth=self.admin_token,
                                     json={"name": name, "scopes": list(scopes)})

    @route("GET /v1/admin-keys")
    def list_admin_keys(self) -> AdminKeyList:
        return self._session.request("GET", "/v1/admin-keys", AdminKeyList, auth=self.admin_token)

    @route("DELETE /v1/admin-keys/{name}")
    def revoke_admin_key(self, name: str) -> AdminKeyView:
        """The key stops working at once; its name is never reused."""
        return self._session.request("DELETE", f"/v1/admin-keys/{segment(name)}", AdminKeyView, auth=self.admin_token)

    @route("GET /v1/admin/audit")
    def org_audit(self, since: int = 0, limit: int = 100) -> OrgAuditPage:
        """The org's audit events (tenants, keys, erasures, migrations) after `since`, oldest first."""
        return self._session.request("GET", "/v1/admin/audit", OrgAuditPage, auth=self.admin_token,
                                     params={"since": since, "limit": limit})

    def iter_org_audit(self, since: int = 0, page_size: int = 100) -> Iterator[OrgAuditEvent]:
        return follow_pages(lambda after: self.org_audit(since=after, limit=page_size), since, page_size)

    @route("GET /v1/admin/audit/verify")
    def admin_verify_audit(self, tenant_id: str | None = None) -> AuditVerification:
        """The org audit chain checked, or with `tenant_id` that tenant's."""
        return self._session.request("GET", "/v1/admin/audit/verify", AuditVerification, auth=self.admin_token,
                                     params=drop_none(tenant=tenant_id))

    @route("GET /v1/admin/erasure-receipts/{tenant_id}")
    def erasure_receipt(self, tenant_id: str) -> ErasureReceipt:
        """The signed receipt of an erased tenant; check it offline with `erasure_receipt_keys()`."""
        return self._session.request("GET", f"/v1/admin/erasure-receipts/{segment(tenant_id)}", ErasureReceipt,
                                     auth=self.admin_token)

    @route("GET /v1/erasure-receipts/keys")
    def erasure_receipt_keys(self) -> SigningKeys:
        """The public keys that check erasure receipts (no credential needed), the current one first."""
        return self._session.request("GET", "/v1/erasure-receipts/keys", SigningKeys)

    # ---- health ------------------------------------------------------------------------------------------------
    @route("GET /v1/healthz")
    def healthz(self) -> Health:
        """The process is up."""
        return self._session.request("GET", "/v1/healthz", Health)

    @route("GET /v1/readyz")
    def readyz(self) -> Readiness:
        """Models loaded and key provider reachable; raises `ServiceUnavailableError` (`not_ready`) otherwise."""
        return self._session.request("GET", "/v1/readyz", Readiness)


_TENANT_LIST = pydantic.TypeAdapter(list[TenantView])
