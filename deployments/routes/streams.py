"""HTTP for cameras: streams, pushed frames, events (JSON and Server-Sent Events), attendance, unknowns and
webhooks. Thin wrappers over the replica's StreamApi (deployments/stream_api.py); the bodies' schemas are in
securegate/stream_schemas.py (they are also the OpenAPI schemas, and what the client returns)."""

from __future__ import annotations

import json
import time
from typing import Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from securegate.schemas import SEQ_MAX, ErrorResponse
from securegate.stream_schemas import (Attendance, Delivery, DeliveryList, EventPage, FrameAccepted, Kind, Promote, Promoted,
                                       StreamCreate, StreamList, StreamPatch, StreamView, UnknownList, WebhookCreate,
                                       WebhookCreated, WebhookList)
from deployments.routes.common import bearer, collaborator
from deployments.stream_api import StreamApi
from securegate import errors
from vision import images

router = APIRouter()

ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 414, 415, 422, 429, 503)}
KEEP_ALIVE_S = 15.0  # a comment this often keeps an idle event stream's connection open


# ---- routes -------------------------------------------------------------------------------------------------


Cameras = collaborator("cameras", StreamApi)


@router.post("/v1/streams", status_code=201, response_model=StreamView, responses=ERRORS, tags=["cameras"])
async def http_create_stream(cameras: Cameras, body: StreamCreate, authorization: str | None = Header(None)) -> dict:
    return await cameras.create_stream(bearer(authorization), body.name, body.url, body.fps, body.cooldown_s, body.loop, body.enabled)


@router.get("/v1/streams", response_model=StreamList, responses=ERRORS, tags=["cameras"])
async def http_list_streams(cameras: Cameras, authorization: str | None = Header(None)) -> dict:
    return await cameras.list_streams(bearer(authorization))


@router.get("/v1/streams/{stream_id}", response_model=StreamView, responses=ERRORS, tags=["cameras"])
async def http_get_stream(cameras: Cameras, stream_id: str, authorization: str | None = Header(None)) -> dict:
    return await cameras.get_stream(bearer(authorization), stream_id)


@router.patch("/v1/streams/{stream_id}", response_model=StreamView, responses=ERRORS, tags=["cameras"])
async def http_update_stream(cameras: Cameras, stream_id: str, body: StreamPatch, authorization: str | None = Header(None)) -> dict:
    return await cameras.update_stream(bearer(authorization), stream_id, **body.model_dump(exclude_none=True))


@router.delete("/v1/streams/{stream_id}", status_code=204, responses=ERRORS, tags=["cameras"])
async def http_delete_stream(cameras: Cameras, stream_id: str, authorization: str | None = Header(None)) -> Response:
    await cameras.delete_stream(bearer(authorization), stream_id)
    return Response(status_code=204)


@router.post("/v1/streams/{stream_id}/frames", status_code=202, response_model=FrameAccepted, responses=ERRORS,
             tags=["cameras"], openapi_extra={"requestBody": {"required": True, "content": {
                 media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in images.MEDIA_TYPES}}})
async def http_push_frame(cameras: Cameras, stream_id: str, request: Request,
                          ts: float | None = Query(None, ge=0, le=1e10, description="capture time, epoch seconds (default: arrival)"),
                          authorization: str | None = Header(None), content_type: str | None = Header(None)) -> dict:
    """One frame as the raw body, sent as one of the image media types; it passes the photo endpoints'
    image gate (header, pixel limit) before it is queued."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type not in images.MEDIA_TYPES:
        raise errors.UnsupportedMediaType(f"send the frame as the body with Content-Type one of {', '.join(images.MEDIA_TYPES)}",
                                          media_types=list(images.MEDIA_TYPES))
    return await cameras.push_frame(bearer(authorization), stream_id, await request.body(), ts)


@router.get("/v1/events", response_model=EventPage, responses=ERRORS, tags=["events"])
async def http_events(cameras: Cameras, since: int = Query(0, ge=0, le=SEQ_MAX), limit: int = Query(100, ge=1, le=1000),
                      camera: str | None = Query(None, max_length=64), person: str | None = Query(None, max_length=256),
                      kind: Kind | None = Query(None), authorization: str | None = Header(None)) -> dict:
    return await cameras.events(bearer(authorization), since, limit, camera, person, kind)


@router.get("/v1/events/stream", responses={200: {"content": {"text/event-stream": {}}}, **ERRORS}, tags=["events"])
async def http_event_stream(cameras: Cameras, since: int = Query(0, ge=0, le=SEQ_MAX),
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
        feed = await cameras.event_feed(bearer(authorization), since, min(15.0, max_s))
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
async def http_attendance(cameras: Cameras, date: str | None = Query(None, max_length=10, description="YYYY-MM-DD (UTC); default today"),
                          authorization: str | None = Header(None)) -> dict:
    return await cameras.attendance(bearer(authorization), date)


@router.get("/v1/unknowns", response_model=UnknownList, responses=ERRORS, tags=["events"])
async def http_list_unknowns(cameras: Cameras, authorization: str | None = Header(None)) -> dict:
    return await cameras.list_unknowns(bearer(authorization))


@router.post("/v1/unknowns/{unknown_id}/promote", status_code=201, response_model=Promoted, responses=ERRORS, tags=["events"])
async def http_promote_unknown(cameras: Cameras, unknown_id: str, body: Promote, authorization: str | None = Header(None)) -> dict:
    return await cameras.promote_unknown(bearer(authorization), unknown_id, body.external_id, body.metadata)


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated, responses=ERRORS, tags=["events"])
async def http_create_webhook(cameras: Cameras, body: WebhookCreate, authorization: str | None = Header(None)) -> dict:
    return await cameras.create_webhook(bearer(authorization), body.url, body.kinds, body.max_attempts)


@router.get("/v1/webhooks", response_model=WebhookList, responses=ERRORS, tags=["events"])
async def http_list_webhooks(cameras: Cameras, authorization: str | None = Header(None)) -> dict:
    return await cameras.list_webhooks(bearer(authorization))


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=ERRORS, tags=["events"])
async def http_delete_webhook(cameras: Cameras, webhook_id: str, authorization: str | None = Header(None)) -> Response:
    await cameras.delete_webhook(bearer(authorization), webhook_id)
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=DeliveryList, responses=ERRORS, tags=["events"])
async def http_webhook_deliveries(cameras: Cameras, webhook_id: str, state: Literal["pending", "delivered", "dead", "dropped"] | None = Query(None),
                                  limit: int = Query(100, ge=1, le=1000), authorization: str | None = Header(None)) -> dict:
    return await cameras.webhook_deliveries(bearer(authorization), webhook_id, state, limit)


@router.post("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", response_model=Delivery, responses=ERRORS, tags=["events"])
async def http_retry_delivery(cameras: Cameras, webhook_id: str, delivery_id: str, authorization: str | None = Header(None)) -> dict:
    """A dead letter sent again (pending, due now, its attempts counted afresh); 409 for any other state."""
    return await cameras.retry_delivery(bearer(authorization), webhook_id, delivery_id)
