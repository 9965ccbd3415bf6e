"""The cameras' handle API, a collaborator of the Ingress: plain async methods that Python callers use through the
ingress's Serve handle and that the HTTP routes (deployments/routes/streams.py) call. The tenant always
comes from the API key; the StreamSupervisor deployment does the work. Also the hooks the Ingress's other
collaborators call around tenant, person and key operations that touch cameras (no-ops without cameras).
"""

from __future__ import annotations

import datetime as dt
import time

from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from deployments.tenant_calls import TenantCalls
from securegate import errors, metrics
from securegate import schemas as s
from securegate.stream_schemas import EVENT_KINDS
from vision import images


# An open event stream re-checks its API key this often while idle (and before every batch it delivers).
CREDENTIAL_RECHECK_S = 2.0


class StreamApi:
    """`streams`: the StreamSupervisor (None: an application without cameras); `tenants`: the TenantSupervisor."""

    def __init__(self, streams: DeploymentHandle | None, tenants: DeploymentHandle, calls: TenantCalls,
                 max_image_pixels: int) -> None:
        self.streams, self.tenants, self.calls = streams, tenants, calls
        self.max_image_pixels = max_image_pixels

    # ---- streams ----------------------------------------------------------------------------------------
    @api_errors
    async def create_stream(self, api_key: str, name: str, url: str | None = None, fps: float = 5.0,
                            cooldown_s: float = 60.0, loop: bool = False, enabled: bool = True) -> dict:
        """A camera: `url` (rtsp://, http(s):// MJPEG or video, a server-side file) is pulled; without a URL
        the stream takes pushed frames (`push_frame`)."""
        tenant = await self.calls.tenant(api_key)
        config = {"fps": fps, "cooldown_s": cooldown_s, "loop": loop, "enabled": enabled}
        return await self.streams.create_stream.remote(tenant.tenant_id, name, url, config)

    @api_errors
    async def list_streams(self, api_key: str) -> dict:
        tenant = await self.calls.tenant(api_key)
        return {"streams": await self.streams.list_streams.remote(tenant.tenant_id)}

    @api_errors
    async def get_stream(self, api_key: str, stream_id: str) -> dict:
        tenant = await self.calls.tenant(api_key)
        return await self.streams.get_stream.remote(tenant.tenant_id, stream_id)

    @api_errors
    async def update_stream(self, api_key: str, stream_id: str, **changes) -> dict:
        tenant = await self.calls.tenant(api_key)
        return await self.streams.update_stream.remote(tenant.tenant_id, stream_id, changes)

    @api_errors
    async def delete_stream(self, api_key: str, stream_id: str) -> None:
        tenant = await self.calls.tenant(api_key)
        await self.streams.delete_stream.remote(tenant.tenant_id, stream_id)

    @api_errors
    async def push_frame(self, api_key: str, stream_id: str, jpeg: bytes, captured_at: float | None = None) -> dict:
        """One frame (JPEG, or another format the photo endpoints take) from an edge device or browser;
        `captured_at` in epoch seconds (default: now). Frames are never stored; when the camera's pipeline is behind, the oldest waiting frame is dropped."""
        tenant = await self.calls.tenant(api_key)
        # The photo endpoints' gate, here, before the bytes travel to the camera's queue: a bomb, garbage or an
        # image too small to hold a face is refused with its code and never reaches a decoder.
        images.check(jpeg, self.max_image_pixels)
        return await self.streams.push_frame.remote(tenant.tenant_id, stream_id, jpeg, captured_at)

    # ---- events -----------------------------------------------------------------------------------------
    @api_errors
    async def events(self, api_key: str, since: int = 0, limit: int = 100, camera: str | None = None,
                     person: str | None = None, kind: str | None = None) -> dict:
        """Events after sequence number `since`, oldest first; `person` is a person id, external id or
        anonymous id. Page with `next_since`."""
        tenant = await self.calls.tenant(api_key)
        if kind is not None and kind not in EVENT_KINDS:
            raise errors.InvalidRequest(f"kind is one of {', '.join(EVENT_KINDS)}")
        found = await self.streams.events.remote(tenant.tenant_id, since, limit, camera, person, kind)
        return {"events": found, "next_since": found[-1]["seq"] if found else since}

    async def event_feed(self, api_key: str, since: int = 0, timeout_s: float = 15.0):
        """Live events for Server-Sent Events: an async iterator of event lists ([] = nothing new yet).

        The key is checked again before every batch it delivers and at least every CREDENTIAL_RECHECK_S while
        idle: once the key is rotated away or the tenant deleted, the iterator raises the API error the key
        now gets (401, 404) instead of delivering, so a stream never outlives its credential by more than
        that."""
        tenant = await self.calls.tenant(api_key)

        async def feed():
            cursor, checked = since, time.monotonic()
            while True:
                batch = await self.streams.wait_events.remote(tenant.tenant_id, cursor, min(timeout_s, CREDENTIAL_RECHECK_S))
                if batch or time.monotonic() - checked >= CREDENTIAL_RECHECK_S:
                    try:
                        await self.tenants.authenticate.remote(api_key)  # no rate-limit cost: the stream's own check
                    except Exception as exc:
                        raise errors.to_api_error(exc) from None
                    checked = time.monotonic()
                if batch:
                    cursor = batch[-1]["seq"]
                yield batch

        return feed()

    @api_errors
    async def attendance(self, api_key: str, date: str | None = None) -> dict:
        """First-in / last-out per person on `date` (YYYY-MM-DD, UTC; default today)."""
        tenant = await self.calls.tenant(api_key)
        try:
            day = dt.date.fromisoformat(date) if date else dt.datetime.now(dt.timezone.utc).date()
        except ValueError:
            raise errors.InvalidRequest("date is YYYY-MM-DD") from None
        return {"date": day.isoformat(), "persons": await self.streams.attendance.remote(tenant.tenant_id, day)}

    # ---- unknowns ---------------------------------------------------------------------------------------
    @api_errors
    async def list_unknowns(self, api_key: str) -> dict:
        tenant = await self.calls.tenant(api_key)
        return {"unknowns": await self.streams.list_unknowns.remote(tenant.tenant_id)}

    @api_errors
    async def promote_unknown(self, api_key: str, unknown_id: str, external_id: str | None = None,
                              metadata: dict | None = None) -> dict:
        """The anonymous id becomes a person: its camera samples become the person's faces and its events
        name the person, all or nothing (streams/promotion.py); refused (model_mismatch) when the samples were
        embedded by another model than the tenant's gallery holds."""
        person = s.PersonCreate(external_id=external_id, metadata=metadata or {})  # the HTTP body's bounds, for handle callers too
        tenant = await self.calls.tenant(api_key)
        return await self.streams.promote_unknown.remote(tenant, unknown_id, person.external_id, person.metadata,
                                                         metrics.current_principal.get())

    # ---- webhooks ---------------------------------------------------------------------------------------
    @api_errors
    async def create_webhook(self, api_key: str, url: str, kinds: list[str] | None = None, max_attempts: int | None = None) -> dict:
        """Events POSTed to `url`, signed with the returned secret (shown once); a delivery failing
        `max_attempts` times (default: the server's setting) goes to the dead-letter list."""
        tenant = await self.calls.tenant(api_key)
        return await self.streams.add_webhook.remote(tenant.tenant_id, url, list(kinds or []), max_attempts)

    @api_errors
    async def list_webhooks(self, api_key: str) -> dict:
        tenant = await self.calls.tenant(api_key)
        return {"webhooks": await self.streams.list_webhooks.remote(tenant.tenant_id)}

    @api_errors
    async def delete_webhook(self, api_key: str, webhook_id: str) -> None:
        tenant = await self.calls.tenant(api_key)
        await self.streams.delete_webhook.remote(tenant.tenant_id, webhook_id)

    @api_errors
    async def webhook_deliveries(self, api_key: str, webhook_id: str, state: str | None = None, limit: int = 100) -> dict:
        """Delivery status: pending (with attempts and the next try), delivered, or dead (the dead-letter list)."""
        tenant = await self.calls.tenant(api_key)
        return {"deliveries": await self.streams.deliveries.remote(tenant.tenant_id, webhook_id, state, limit)}

    @api_errors
    async def retry_delivery(self, api_key: str, webhook_id: str, delivery_id: str) -> dict:
        """A dead letter sent again: pending, due now, with the webhook's `max_attempts` afresh (409 conflict
        for a delivery that is not dead)."""
        tenant = await self.calls.tenant(api_key)
        return await self.streams.retry_delivery.remote(tenant.tenant_id, webhook_id, delivery_id)

    # ---- hooks the Ingress's collaborators call from their own operations ---------------------------------------
    async def around_key_rotation(self, tenant_id: str, rotate) -> dict:
        """A content-key rotation also moves events.db to the new key version: its old keys are held in the
        StreamSupervisor's memory first, since the rotation retires them once the faces are re-encrypted."""
        if self.streams is None:
            return await rotate()
        await self.streams.hold_keys.remote(tenant_id)
        result = await rotate()
        await self.streams.reseal.remote(tenant_id)
        return result

    async def before_tenant_delete(self, tenant_id: str) -> None:
        """A tenant's cameras stop before its keys and files go."""
        if self.streams is not None:
            await self.streams.stop_tenant.remote(tenant_id)

    async def after_person_delete(self, tenant_id: str, person_id: str) -> None:
        """A deleted person's events are deleted with them (events, not just their links)."""
        if self.streams is not None:
            await self.streams.forget_person.remote(tenant_id, person_id)

    async def take_unknown(self, tenant, unknown_id: str) -> list:
        """The unknown's kept samples, taken (refused when of another model than the tenant's)."""
        if self.streams is None:
            raise errors.NotFound(f"unknown {unknown_id} not found")
        return await self.streams.take_unknown.remote(tenant, unknown_id)

    async def person_merged(self, tenant_id: str, merged_person_id: str, person_id: str, external_id: str | None) -> int:
        """The merged person's events name the person now; how many were relinked."""
        if self.streams is None:
            return 0
        return await self.streams.person_merged.remote(tenant_id, merged_person_id, person_id, external_id)
