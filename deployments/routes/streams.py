"""HTTP for cameras: streams, pushed frames, events (JSON and Server-Sent Events), attendance, unknowns and
webhooks. Thin wrappers over the handle API (`deployments.stream_api.StreamApi`); the bodies' schemas are
here (they are also the OpenAPI schemas)."""

from __future__ import annotations

import json
import time
from typing import Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from securegate.schemas import SEQ_MAX, Body, ErrorResponse
from deployments.stream_api import StreamApi
from securegate import errors
from vision import images

router = APIRouter()

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 414, 415, 422, 429, 503)}
Kind = Literal["person_seen", "unknown_seen"]
KEEP_ALIVE_S = 15.0  # a comment this often keeps an idle event stream's connection open


class _Body(Body):
    """Request bodies: extra fields forbidden, and only what a response can carry back (schemas.Body)."""


# ---- schemas ------------------------------------------------------------------------------------------------
class StreamCreate(_Body):
    name: str = Field(..., min_length=1, max_length=200)
    url: str | None = Field(None, max_length=4096, description="rtsp://, http(s):// (MJPEG or a video), or a file path on the "
                            "server; credentials are encrypted at rest and redacted in every answer. Omit to push frames.")
    fps: float = Field(5.0, gt=0, le=30, description="frames sampled per second of stream time")
    cooldown_s: float = Field(60.0, ge=0, le=86400, description="one event per person and camera within this window")
    loop: bool = Field(False, description="files: start again at the end")
    enabled: bool = True


class StreamPatch(_Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    url: str | None = Field(None, max_length=4096)
    fps: float | None = Field(None, gt=0, le=30)
    cooldown_s: float | None = Field(None, ge=0, le=86400)
    loop: bool | None = None
    enabled: bool | None = None


class StreamStatus(BaseModel):
    state: str = Field(..., description="connecting | connected | reconnecting | ended | running | restarting | stopped | disabled")
    frames_read: int | None = None
    frames_processed: int | None = None
    frames_dropped: int | None = None
    lag_s: float | None = Field(None, description="capture to end of processing, last frame")
    reconnects: int | None = None
    last_error: str | None = None
    tracks_active: int | None = None
    events: int | None = None


class StreamView(BaseModel):
    stream_id: str
    name: str
    url: str | None = Field(..., description="redacted")
    source: str = Field(..., description="rtsp | http | file | push")
    fps: float
    cooldown_s: float
    loop: bool
    enabled: bool
    created_at: float
    status: StreamStatus


class StreamList(BaseModel):
    streams: list[StreamView]


class FrameAccepted(BaseModel):
    queued: bool
    dropped: int = Field(..., description="frames dropped from this camera's queue to make room for this one")


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    seq: int
    event_id: str
    kind: Kind
    camera: str
    created_at: float
    first_seen: float
    last_seen: float
    person_id: str | None = None
    external_id: str | None = None
    unknown_id: str | None = None
    best_similarity: float | None = None
    track_length: int = Field(..., description="frames the face was tracked in")
    votes: int | None = Field(None, description="the votes that decided the event's identity: frames of its first track "
                              "embedded and searched until the majority was reached (or the track ended)")
    votes_for: int | None = Field(None, description="of those, the votes for the identity named (for unknown_seen: the "
                                  "votes that matched nobody); a tie for the most votes names nobody")
    tracks: int = 1


class EventPage(BaseModel):
    events: list[Event]
    next_since: int


class AttendanceRow(BaseModel):
    person_id: str
    external_id: str | None
    first_in: float
    last_out: float
    first_camera: str
    last_camera: str
    events: int


class Attendance(BaseModel):
    date: str
    persons: list[AttendanceRow]


class Unknown(BaseModel):
    unknown_id: str
    created_at: float
    last_seen: float
    samples: int


class UnknownList(BaseModel):
    unknowns: list[Unknown]


class Promote(_Body):
    external_id: str | None = Field(None, min_length=1, max_length=256)
    metadata: dict | None = None


class Promoted(BaseModel):
    person_id: str
    external_id: str | None
    faces: int
    events: int = Field(..., description="events of the anonymous id now naming the person")


class WebhookCreate(_Body):
    url: str = Field(..., max_length=4096)
    kinds: list[Kind] = Field(default_factory=list, description="event kinds to deliver; empty = all")
    max_attempts: int | None = Field(None, ge=1, le=20, description="then the delivery is dead-lettered; default: server setting")


class WebhookCreated(BaseModel):
    webhook_id: str
    url: str
    kinds: list[str]
    max_attempts: int
    secret: str = Field(..., description="Standard Webhooks signing secret (whsec_...): check each delivery's webhook-id, "
                        "webhook-timestamp and webhook-signature headers with a Standard Webhooks verifier; shown once")


class WebhookView(BaseModel):
    webhook_id: str
    url: str
    kinds: list[str]
    max_attempts: int
    created_at: float
    deliveries: dict[str, int] = Field(..., description="count per state")


class WebhookList(BaseModel):
    webhooks: list[WebhookView]


class Delivery(BaseModel):
    delivery_id: str
    webhook_id: str
    seq: int
    state: Literal["pending", "delivered", "dead", "dropped"]
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    updated_at: float


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


def _bearer(authorization: str | None) -> str:
    from deployments.routes.common import bearer

    return bearer(authorization)


# ---- routes -------------------------------------------------------------------------------------------------
class StreamRoutes(StreamApi):
    @router.post("/v1/streams", status_code=201, response_model=StreamView, responses=ERRORS, tags=["cameras"])
    async def http_create_stream(self, body: StreamCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_stream(_bearer(authorization), body.name, body.url, body.fps, body.cooldown_s, body.loop, body.enabled)

    @router.get("/v1/streams", response_model=StreamList, responses=ERRORS, tags=["cameras"])
    async def http_list_streams(self, authorization: str | None = Header(None)) -> dict:
        return await self.list_streams(_bearer(authorization))

    @router.get("/v1/streams/{stream_id}", response_model=StreamView, responses=ERRORS, tags=["cameras"])
    async def http_get_stream(self, stream_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.get_stream(_bearer(authorization), stream_id)

    @router.patch("/v1/streams/{stream_id}", response_model=StreamView, responses=ERRORS, tags=["cameras"])
    async def http_update_stream(self, stream_id: str, body: StreamPatch, authorization: str | None = Header(None)) -> dict:
        return await self.update_stream(_bearer(authorization), stream_id, **body.model_dump(exclude_none=True))

    @router.delete("/v1/streams/{stream_id}", status_code=204, responses=ERRORS, tags=["cameras"])
    async def http_delete_stream(self, stream_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_stream(_bearer(authorization), stream_id)
        return Response(status_code=204)

    @router.post("/v1/streams/{stream_id}/frames", status_code=202, response_model=FrameAccepted, responses=ERRORS,
                 tags=["cameras"], openapi_extra={"requestBody": {"required": True, "content": {
                     media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in images.MEDIA_TYPES}}})
    async def http_push_frame(self, stream_id: str, request: Request,
                              ts: float | None = Query(None, ge=0, le=1e10, description="capture time, epoch seconds (default: arrival)"),
                              authorization: str | None = Header(None), content_type: str | None = Header(None)) -> dict:
        """One frame as the raw body, sent as one of the image media types; it passes the photo endpoints'
        image gate (header, pixel limit) before it is queued."""
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type not in images.MEDIA_TYPES:
            raise errors.UnsupportedMediaType(f"send the frame as the body with Content-Type one of {', '.join(images.MEDIA_TYPES)}",
                                              media_types=list(images.MEDIA_TYPES))
        return await self.push_frame(_bearer(authorization), stream_id, await request.body(), ts)

    @router.get("/v1/events", response_model=EventPage, responses=ERRORS, tags=["events"])
    async def http_events(self, since: int = Query(0, ge=0, le=SEQ_MAX), limit: int = Query(100, ge=1, le=1000),
                          camera: str | None = Query(None, max_length=64), person: str | None = Query(None, max_length=256),
                          kind: Kind | None = Query(None), authorization: str | None = Header(None)) -> dict:
        return await self.events(_bearer(authorization), since, limit, camera, person, kind)

    @router.get("/v1/events/stream", responses={200: {"content": {"text/event-stream": {}}}, **ERRORS}, tags=["events"])
    async def http_event_stream(self, since: int = Query(0, ge=0, le=SEQ_MAX),
                                max_s: float = Query(3600.0, gt=0, le=86400, description="the stream ends after this; reconnect with Last-Event-ID"),
                                authorization: str | None = Header(None), last_event_id: str | None = Header(None)):
        """Server-Sent Events: `id` = seq, `event` = kind, `data` = the event as JSON; a comment every 15 s keeps
        the connection open. Reconnecting clients send Last-Event-ID and miss nothing. The key is checked again
        as the stream runs: once it is rotated away or the tenant deleted, the stream ends within seconds with
        an `error` event carrying the error body the key now gets."""
        # Others are ignored like any malformed value (isdigit alone passes "²", which int() refuses).
        if last_event_id and last_event_id.isascii() and last_event_id.isdigit() and int(last_event_id) <= SEQ_MAX:
            since = int(last_event_id)
        try:
            feed = await self.event_feed(_bearer(authorization), since, min(15.0, max_s))
        except errors.ApiError:
            raise
        except Exception as exc:
            from securegate.errors import to_api_error

            raise to_api_error(exc) from None

        async def sse():
            yield ": connected\n\n"
            ends = time.monotonic() + max_s
            quiet_since = time.monotonic()
            try:
                async for batch in feed:
                    if time.monotonic() >= ends:
                        break
                    if not batch and time.monotonic() - quiet_since >= KEEP_ALIVE_S:
                        yield ": keep-alive\n\n"
                        quiet_since = time.monotonic()
                    for event in batch:
                        yield f"id: {event['seq']}\nevent: {event['kind']}\ndata: {json.dumps(event)}\n\n"
                        quiet_since = time.monotonic()
            except errors.ApiError as exc:  # the credential no longer holds: say why, then end the stream
                yield f"event: error\ndata: {json.dumps(exc.body())}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.get("/v1/attendance", response_model=Attendance, responses=ERRORS, tags=["events"])
    async def http_attendance(self, date: str | None = Query(None, max_length=10, description="YYYY-MM-DD (UTC); default today"),
                              authorization: str | None = Header(None)) -> dict:
        return await self.attendance(_bearer(authorization), date)

    @router.get("/v1/unknowns", response_model=UnknownList, responses=ERRORS, tags=["events"])
    async def http_list_unknowns(self, authorization: str | None = Header(None)) -> dict:
        return await self.list_unknowns(_bearer(authorization))

    @router.post("/v1/unknowns/{unknown_id}/promote", status_code=201, response_model=Promoted, responses=ERRORS, tags=["events"])
    async def http_promote_unknown(self, unknown_id: str, body: Promote, authorization: str | None = Header(None)) -> dict:
        return await self.promote_unknown(_bearer(authorization), unknown_id, body.external_id, body.metadata)

    @router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated, responses=ERRORS, tags=["events"])
    async def http_create_webhook(self, body: WebhookCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_webhook(_bearer(authorization), body.url, body.kinds, body.max_attempts)

    @router.get("/v1/webhooks", response_model=WebhookList, responses=ERRORS, tags=["events"])
    async def http_list_webhooks(self, authorization: str | None = Header(None)) -> dict:
        return await self.list_webhooks(_bearer(authorization))

    @router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=ERRORS, tags=["events"])
    async def http_delete_webhook(self, webhook_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_webhook(_bearer(authorization), webhook_id)
        return Response(status_code=204)

    @router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, responses=ERRORS, tags=["events"])
    async def http_webhook_deliveries(self, webhook_id: str, state: Literal["pending", "delivered", "dead", "dropped"] | None = Query(None),
                                      limit: int = Query(100, ge=1, le=1000), authorization: str | None = Header(None)) -> dict:
        return await self.webhook_deliveries(_bearer(authorization), webhook_id, state, limit)
