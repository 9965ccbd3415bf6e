"""StreamService: a tenant's cameras, their workers, the event log, re-identification and webhooks.

The StreamSupervisor deployment wraps it (one replica: it is the one writer of every tenant's events.db).

- Streams are persisted with the tenant (`streams.store.StreamStore`, URL sealed) and each runs in a
  detached, named `StreamWorker` actor; at start the service resumes every persisted, enabled stream.
- `record_sighting` applies the cooldown per (identity, camera): a sighting within `cooldown_s` of the
  last one of the same identity on the same camera extends that event instead of adding one.
- Unknown faces get an anonymous id per tenant (`unk_…`): a track's mean vector is matched against the
  tenant's unknowns (cosine, the tenant's threshold); the same stranger gets the same id on every camera
  and every visit. Vectors are sealed like faces and follow the tenant's retention and deletion.
- Live events: `wait_events` long-polls (the Ingress turns it into Server-Sent Events); webhooks get each
  new event signed as Standard Webhooks, retried, then dead-lettered (`streams.webhooks`).

The rooms: this facade keeps the methods the StreamSupervisor calls and hands its collaborators what they need:
`files` (each tenant's events.db and ciphers), `model` (the cameras' model and threshold), `workers` (the
StreamWorker actors), `cameras` (stream configuration), `unknowns` (re-identification), `events_log` (sightings,
cooldowns, reading and long-polling events), `subscriptions` and `webhooks` (their deliveries) and `promotions`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from pathlib import Path

import numpy as np

from streams.errors import DeliveryNotDead, InvalidStream, StreamNotFound, TooManyStreams
from streams.event_index import EventKeys
from streams.event_log import Cooldowns, EventLog
from streams.files import StreamFiles
from streams.promotion import UnknownPromotion
from streams.registry import StreamRegistry
from streams.reidentification import Reidentification
from streams.store import StreamStore
from streams.stream_model import StreamModel
from streams.webhook_subscriptions import WebhookSubscriptions
from streams.webhooks import WebhookDeliveries
from streams.worker_pool import WorkerPool

__all__ = ["DeliveryNotDead", "InvalidStream", "StreamNotFound", "StreamService", "TooManyStreams"]

log = logging.getLogger(__name__)


class StreamService:
    def __init__(self, data_dir: str, keys, tenants, detector, embedder, supervisor, settings) -> None:
        self.data_dir = Path(data_dir)
        self.tenants = tenants
        self.settings = settings  # securegate.settings.Settings
        self.cfg = settings.streams
        self.files = StreamFiles(self.data_dir, keys, settings)
        self.model = StreamModel(embedder, settings)
        self.workers = WorkerPool(self.cfg, supervisor, detector, embedder, tenants)
        self.cooldowns = Cooldowns()
        self.cameras = StreamRegistry(self.files, self.workers, self.model, tenants, self.cooldowns, settings)
        self.unknowns = Reidentification(self.files, self.model, tenants, self.cfg)
        self.webhooks = WebhookDeliveries(self.files.stores, self.files.event_keys, self.cfg)
        self.subscriptions = WebhookSubscriptions(self.files, self.cfg)
        self.events_log = EventLog(self.files, self.unknowns, self.cameras, self.webhooks, self.cooldowns)
        self.promotions = UnknownPromotion(self.files.store, self.files.indexed_event_keys, self.unknowns.gallery, tenants,
                                           self.cooldowns.follow)
        self._background: list[asyncio.Task] = []

    # ---- plumbing ---------------------------------------------------------------------------------------
    def store(self, tenant_id: str) -> StreamStore:
        return self.files.store(tenant_id)

    async def event_keys(self, tenant_id: str, *, read: bool = True) -> EventKeys:
        return await self.files.event_keys(tenant_id, read=read)

    async def hold_keys(self, tenant_id: str, hold_s: float = 600.0) -> None:
        await self.files.hold_keys(tenant_id, hold_s)

    async def reseal(self, tenant_id: str) -> int:
        return await self.files.reseal(tenant_id)

    def start_background(self) -> None:
        if not self._background:
            loop = asyncio.get_running_loop()
            self._background = [loop.create_task(self._resume_all()), loop.create_task(self.webhooks.forever()),
                                loop.create_task(self._retention_forever()), loop.create_task(self.workers.watch_forever())]

    async def _resume_all(self) -> None:
        """At start: every persisted, enabled stream of every tenant gets its worker (found if still alive)."""
        await asyncio.sleep(1.0)  # let the application finish deploying
        for tenant_id in self.files.tenant_ids():
            try:
                if self.store(tenant_id).pending_promotions():
                    await self.promotions.recover(await self.tenants.tenant.remote(tenant_id))
            except Exception:
                log.exception("could not finish the pending promotions of tenant %s", tenant_id)
            try:
                await self.cameras.resume(tenant_id)
            except Exception:
                log.exception("could not resume the streams of tenant %s", tenant_id)
        for tenant_id in self.files.tenant_ids():  # files from before the blind index
            try:
                await self.files.indexed_event_keys(tenant_id)
            except Exception:
                log.exception("could not index the events of tenant %s", tenant_id)

    async def stop_tenant(self, tenant_id: str) -> int:
        """Before a tenant is deleted: stop its streams and close its file (the tenant's directory goes next)."""
        stopped = await self.workers.stop_tenant(tenant_id)
        self.files.close(tenant_id)
        self.unknowns.forget(tenant_id)
        self.cameras.forget(tenant_id)
        self.cooldowns.drop(tenant_id)
        return stopped

    # ---- streams ------------------------------------------------------------------------------------------
    async def create_stream(self, tenant_id: str, name: str, url: str | None, config: dict) -> dict:
        return await self.cameras.create_stream(tenant_id, name, url, config)

    async def get_stream(self, tenant_id: str, stream_id: str) -> dict:
        return await self.cameras.get_stream(tenant_id, stream_id)

    async def list_streams(self, tenant_id: str) -> list[dict]:
        return await self.cameras.list_streams(tenant_id)

    async def update_stream(self, tenant_id: str, stream_id: str, changes: dict) -> dict:
        return await self.cameras.update_stream(tenant_id, stream_id, changes)

    async def delete_stream(self, tenant_id: str, stream_id: str) -> None:
        await self.cameras.delete_stream(tenant_id, stream_id)

    async def push_frame(self, tenant_id: str, stream_id: str, jpeg: bytes, captured_at: float | None) -> dict:
        return await self.cameras.push_frame(tenant_id, stream_id, jpeg, captured_at)

    async def worker_config(self, tenant_id: str, stream_id: str) -> dict | None:
        return await self.cameras.worker_config(tenant_id, stream_id)

    # ---- sightings → events ----------------------------------------------------------------------------
    async def record_sighting(self, tenant_id: str, stream_id: str, kind: str, sighting: dict) -> int:
        return await self.events_log.record_sighting(tenant_id, stream_id, kind, sighting)

    async def close_sighting(self, tenant_id: str, stream_id: str, seq: int | None, final: dict) -> None:
        await self.events_log.close_sighting(tenant_id, stream_id, seq, final)

    async def events(self, tenant_id: str, since: int = 0, limit: int = 100, camera: str | None = None,
                     person: str | None = None, kind: str | None = None) -> list[dict]:
        return await self.events_log.events(tenant_id, since, limit, camera, person, kind)

    async def wait_events(self, tenant_id: str, since: int, timeout_s: float = 15.0, limit: int = 100) -> list[dict]:
        return await self.events_log.wait_events(tenant_id, since, timeout_s, limit)

    async def attendance(self, tenant_id: str, day: dt.date) -> list[dict]:
        return await self.events_log.attendance(tenant_id, day)

    # ---- unknowns and persons ------------------------------------------------------------------------------
    async def stream_model(self) -> str:
        return await self.model.model_id()

    async def list_unknowns(self, tenant_id: str) -> list[dict]:
        return await self.unknowns.list_unknowns(tenant_id)

    async def take_unknown(self, tenant, unknown_id: str) -> np.ndarray:
        """The unknown's vectors for the tenant's gallery (a rejection); refused when another model embedded them."""
        return await self.promotions.vectors(tenant, unknown_id)

    async def promote_unknown(self, tenant, unknown_id: str, external_id: str | None, metadata: dict, principal: str) -> dict:
        """The anonymous id becomes a person with its samples as faces and its events naming them, all or
        nothing (streams/promotion.py)."""
        return await self.promotions.promote(tenant, unknown_id, external_id, metadata, principal)

    async def person_merged(self, tenant_id: str, merged_person_id: str, person_id: str, external_id: str | None) -> int:
        """After a merge: the merged person's events now name the surviving person (none if no camera file)."""
        if not self.files.exists(tenant_id):
            return 0
        return await self.events_log.relink(tenant_id, merged_person_id, person_id, external_id)

    async def forget_person(self, tenant_id: str, person_id: str) -> int:
        return await self.events_log.forget_person(tenant_id, person_id)

    # ---- retention ---------------------------------------------------------------------------------------------
    async def enforce_retention(self, tenant_id: str, retention_days: float, now: float | None = None) -> dict:
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        unknowns = self.unknowns.expire(tenant_id, cutoff)
        return {"events": self.store(tenant_id).delete_events_before(cutoff), "unknowns": unknowns}

    async def _retention_forever(self) -> None:
        """Every `tenancy.retention_check_s`: events and unknowns older than each tenant's `retention_days`."""
        while True:
            await asyncio.sleep(self.settings.tenancy.retention_check_s)
            for tenant_id in self.files.tenant_ids():
                try:
                    tenant = await self.tenants.tenant.remote(tenant_id)
                    if tenant.settings.retention_days is not None:
                        await self.enforce_retention(tenant.tenant_id, tenant.settings.retention_days)
                except Exception:  # a tenant deleted meanwhile, or a dependency restarting: next round
                    log.warning("camera retention of %s skipped", tenant_id, exc_info=True)

    # ---- webhooks ---------------------------------------------------------------------------------------------
    async def add_webhook(self, tenant_id: str, url: str, kinds: list[str], max_attempts: int | None = None) -> dict:
        return await self.subscriptions.add_webhook(tenant_id, url, kinds, max_attempts)

    async def list_webhooks(self, tenant_id: str) -> list[dict]:
        return await self.subscriptions.list_webhooks(tenant_id)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> None:
        await self.subscriptions.delete_webhook(tenant_id, webhook_id)

    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> dict:
        return await self.subscriptions.retry_delivery(tenant_id, webhook_id, delivery_id)

    async def deliveries(self, tenant_id: str, webhook_id: str, state: str | None, limit: int) -> list[dict]:
        return await self.subscriptions.deliveries(tenant_id, webhook_id, state, limit)
