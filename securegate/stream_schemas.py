"""Bodies of the camera API (routes in deployments/routes/streams.py): streams, pushed frames, events (JSON and
Server-Sent Events), attendance, unknowns, webhooks and their deliveries. They are also its OpenAPI schemas, and
what securegate.client returns for those routes (one definition per API type)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from securegate.schemas import Body

Kind = Literal["person_seen", "unknown_seen"]
EVENT_KINDS: tuple[str, ...] = get_args(Kind)  # the one list of event kinds, for checks outside a schema


class StreamCreate(Body):
    name: str = Field(..., min_length=1, max_length=200)
    url: str | None = Field(None, max_length=4096, description="rtsp://, http(s):// (MJPEG or a video), or a file path on the "
                            "server; credentials are encrypted at rest and redacted in every answer. Omit to push frames.")
    fps: float = Field(5.0, gt=0, le=30, description="frames sampled per second of stream time")
    cooldown_s: float = Field(60.0, ge=0, le=86400, description="one event per person and camera within this window")
    loop: bool = Field(False, description="files: start again at the end")
    enabled: bool = True


class StreamPatch(Body):
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
    decided_by: Literal["template", "votes"] | None = Field(None, description="template: the track's pooled template named "
                                                            "the person (no face named anyone else); votes: the majority did")
    tracks: int = 1
    best_frame_offset_s: float | None = Field(None, description="stream offset of the frame with the track's best face "
                                              "(vision/quality.py): where a thumbnail of the event comes from")
    best_frame_quality: float | None = Field(None, description="that face's quality score, 0..1")


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


class Promote(Body):
    external_id: str | None = Field(None, min_length=1, max_length=256)
    metadata: dict | None = None


class Promoted(BaseModel):
    person_id: str
    external_id: str | None
    faces: int
    events: int = Field(..., description="events of the anonymous id now naming the person")


class WebhookCreate(Body):
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
