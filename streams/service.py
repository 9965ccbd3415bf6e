"""StreamService: a tenant's cameras, their workers, the event log, re-identification and webhooks.

The StreamRouter deployment wraps it (one replica: it is the one writer of every tenant's events.db).

- Streams are persisted with the tenant (`streams.store.CameraStore`, URL sealed) and each runs in a
  detached, named `StreamWorker` actor; at start the service resumes every persisted, enabled stream.
- `record_sighting` applies the cooldown per (identity, camera): a sighting within `cooldown_s` of the
  last one of the same identity on the same camera extends that event instead of adding one.
- Unknown faces get an anonymous id per tenant (`unk_…`): a track's mean vector is matched against the
  tenant's unknowns (cosine, the tenant's threshold); the same stranger gets the same id on every camera
  and every visit. Vectors are sealed like faces and follow the tenant's retention and deletion.
- Live events: `wait_events` long-polls (the Ingress turns it into Server-Sent Events); webhooks get each
  new event signed as Standard Webhooks, retried, then dead-lettered (`streams.webhooks`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import ray

from securegate import errors
from streams.attendance import attendance
from streams.event_index import EventKeys
from streams.sources import file_path, redact_url, source_kind
from streams.promotion import UnknownPromotion
from streams.store import CameraStore, events_path
from streams.unknowns import UnknownGallery
from streams.webhooks import WebhookDeliveries, new_secret
from streams.worker import NAMESPACE, StreamWorkerActor, worker_name

log = logging.getLogger(__name__)

EVENT_KINDS = ("person_seen", "unknown_seen")


class StreamNotFound(LookupError):
    """No such stream (or webhook, unknown) for this tenant."""


class InvalidStream(ValueError):
    """A stream configuration that cannot work (bad URL, push-only operation on a pulled stream...)."""


class TooManyStreams(ValueError):
    """The tenant has `max_streams_per_tenant` streams already."""


class DeliveryNotDead(Exception):
    """Only a dead-lettered webhook delivery can be retried."""

    api_error = errors.Conflict


class StreamService:
    def __init__(self, data_dir: str, keys, tenants, detector, embedder, router_handle, settings) -> None:
        self.data_dir = Path(data_dir)
        self.keys, self.tenants, self.detector, self.embedder = keys, tenants, detector, embedder
        self.router_handle = router_handle
        self.settings = settings  # securegate.settings.Settings
        self.cfg = settings.streams
        self._stores: dict[str, CameraStore] = {}
        self._workers: dict[tuple[str, str], Any] = {}
        self._cooldown: dict[tuple[str, str, str], tuple[int, float]] = {}  # (tenant, camera, identity) -> (seq, last_seen)
        self._unknowns: dict[str, UnknownGallery] = {}  # tenant -> its unknowns, for re-identification
        self._new_event: dict[str, asyncio.Condition] = {}
        self.webhooks = WebhookDeliveries(self._stores, self.ciphers, self.cfg)
        self.promotions = UnknownPromotion(self.store, self._indexed, self._unknown_index, tenants, self._cooldowns_follow)
        self._camera_model: str | None = None  # model id of the Embedder cameras embed with (the default pack's)
        self._background: list[asyncio.Task] = []
        self._model_threshold: float | None = None
        self._ciphers: dict[str, tuple[float, EventKeys]] = {}  # tenant -> (expires, ciphers)
        self._streams: dict[str, dict[str, dict]] = {}  # tenant -> stream id -> stream (decrypted URL), for sightings

    # ---- plumbing ---------------------------------------------------------------------------------------
    def store(self, tenant_id: str) -> CameraStore:
        if tenant_id not in self._stores:
            self._stores[tenant_id] = CameraStore(events_path(self.data_dir, tenant_id), tenant_id)
        return self._stores[tenant_id]

    async def ciphers(self, tenant_id: str, *, read: bool = True) -> EventKeys:
        """The tenant's record ciphers and event index keys: kept for `keys.cache_ttl_s` (as the KeyService keeps
        unwrapped keys), since every sighting reads and writes sealed rows; dropped with the tenant."""
        versions = self.store(tenant_id).key_versions() if read else set()
        now = time.monotonic()
        cached = self._ciphers.get(tenant_id)
        if cached is None or cached[0] < now:
            cached = self._ciphers[tenant_id] = (now + self.settings.keys.cache_ttl_s, await EventKeys(self.keys, tenant_id).load(versions))
        return await cached[1].load(versions, current=False)

    async def _indexed(self, tenant_id: str) -> EventKeys:
        """`ciphers`, once every event of the tenant's file is in the blind index: a file from before it is tagged
        at first use, in batches off the event loop (sightings go on meanwhile; their events are tagged as written)."""
        ciphers = await self.ciphers(tenant_id)
        store = self.store(tenant_id)
        while await asyncio.to_thread(store.index_legacy_events, ciphers):
            pass
        return ciphers

    async def hold_keys(self, tenant_id: str, hold_s: float = 600.0) -> None:
        """Before a content-key rotation: the ciphers of every version in use stay in memory (at most
        `hold_s`), so `reseal` can open old values even once the rotation has retired their version."""
        if not events_path(self.data_dir, tenant_id).exists():
            return
        ciphers = await self.ciphers(tenant_id)
        self._ciphers[tenant_id] = (time.monotonic() + hold_s, ciphers)

    async def reseal(self, tenant_id: str) -> int:
        """After a content-key rotation started: every sealed value of the tenant's events.db moves to the
        new current version (the faces are re-encrypted by the rotation itself)."""
        if not events_path(self.data_dir, tenant_id).exists():
            return 0
        held = self._ciphers.get(tenant_id)
        ciphers = held[1] if held is not None else await self.ciphers(tenant_id)
        await ciphers.load(self.store(tenant_id).key_versions(), current=True)  # the new current version
        self._ciphers[tenant_id] = (time.monotonic() + self.settings.keys.cache_ttl_s, ciphers)
        resealed = self.store(tenant_id).reseal(ciphers)
        log.info("tenant %s: %d camera records re-sealed under key version %d", tenant_id, resealed, ciphers.current.key_version)
        return resealed

    def _condition(self, tenant_id: str) -> asyncio.Condition:
        return self._new_event.setdefault(tenant_id, asyncio.Condition())

    def start_background(self) -> None:
        if not self._background:
            loop = asyncio.get_running_loop()
            self._background = [loop.create_task(self._resume_all()), loop.create_task(self.webhooks.forever()),
                                loop.create_task(self._retention_forever()), loop.create_task(self._watch_workers())]

    # ---- streams ------------------------------------------------------------------------------------------
    def _check_config(self, url: str | None, fps: float) -> None:
        if url is not None:
            try:
                kind = source_kind(url)
            except ValueError as exc:
                raise InvalidStream(str(exc)) from None
            if kind == "file":
                path = file_path(url).resolve()
                roots = [(self.data_dir / "media").resolve(), *(Path(d).resolve() for d in self.cfg.media_dirs)]
                if not any(path.is_relative_to(root) for root in roots):
                    raise InvalidStream("file sources are read from the server's media directories only "
                                        f"({self.data_dir / 'media'} and settings streams.media_dirs)")
                if not path.is_file():
                    raise InvalidStream(f"no such video file on the server: {redact_url(url)}")
        if not 0 < fps <= 30:
            raise InvalidStream("fps must be in (0, 30]")

    async def create_stream(self, tenant_id: str, name: str, url: str | None, config: dict) -> dict:
        store = self.store(tenant_id)
        ciphers = await self.ciphers(tenant_id)
        if len(store.streams(ciphers)) >= self.cfg.max_streams_per_tenant:
            raise TooManyStreams(f"a tenant has at most {self.cfg.max_streams_per_tenant} streams")
        self._check_config(url, config["fps"])
        stream_id = store.add_stream(ciphers.current, name, url or "", config)
        self._streams.pop(tenant_id, None)
        if config.get("enabled", True):
            await self._ensure_worker(tenant_id, stream_id)
        return await self.get_stream(tenant_id, stream_id)

    async def _stream(self, tenant_id: str, stream_id: str) -> dict:
        if tenant_id not in self._streams:
            ciphers = await self.ciphers(tenant_id)
            self._streams[tenant_id] = {s["stream_id"]: s for s in self.store(tenant_id).streams(ciphers)}
        try:
            return self._streams[tenant_id][stream_id]
        except KeyError:
            raise StreamNotFound(f"stream {stream_id} not found") from None

    def _view(self, stream: dict, status: dict | None) -> dict:
        url = stream["url"] or None
        return {"stream_id": stream["stream_id"], "name": stream["name"],
                "url": redact_url(url) if url else None, "source": source_kind(url) if url else "push",
                **{k: stream["config"].get(k) for k in ("fps", "cooldown_s", "loop", "enabled")},
                "created_at": stream["created_at"], "status": status or {"state": "disabled"}}

    async def get_stream(self, tenant_id: str, stream_id: str) -> dict:
        stream = await self._stream(tenant_id, stream_id)
        return self._view(stream, await self._status(tenant_id, stream))

    async def list_streams(self, tenant_id: str) -> list[dict]:
        ciphers = await self.ciphers(tenant_id)
        streams = self.store(tenant_id).streams(ciphers)
        statuses = await asyncio.gather(*(self._status(tenant_id, s) for s in streams))
        return [self._view(s, st) for s, st in zip(streams, statuses)]

    async def update_stream(self, tenant_id: str, stream_id: str, changes: dict) -> dict:
        stream = await self._stream(tenant_id, stream_id)
        url = changes.pop("url", None) or stream["url"]
        name = changes.pop("name", None) or stream["name"]
        config = {**stream["config"], **{k: v for k, v in changes.items() if v is not None}}
        self._check_config(url or None, config["fps"])
        ciphers = await self.ciphers(tenant_id)
        self.store(tenant_id).put_stream(ciphers.current, stream_id, name, url, config, stream["created_at"])
        self._streams.pop(tenant_id, None)
        await self._stop_worker(tenant_id, stream_id)
        if config.get("enabled", True):
            await self._ensure_worker(tenant_id, stream_id)
        return await self.get_stream(tenant_id, stream_id)

    async def delete_stream(self, tenant_id: str, stream_id: str) -> None:
        await self._stream(tenant_id, stream_id)
        await self._stop_worker(tenant_id, stream_id)
        self.store(tenant_id).delete_stream(stream_id)
        self._streams.pop(tenant_id, None)
        for key in [k for k in self._cooldown if k[0] == tenant_id and k[1] == stream_id]:
            del self._cooldown[key]

    async def push_frame(self, tenant_id: str, stream_id: str, jpeg: bytes, captured_at: float | None) -> dict:
        stream = await self._stream(tenant_id, stream_id)
        if stream["url"]:
            raise InvalidStream("this stream pulls from its URL; frames can be pushed to streams created without one")
        if not stream["config"].get("enabled", True):
            raise InvalidStream("the stream is disabled")
        worker = await self._ensure_worker(tenant_id, stream_id)
        return await worker.push_frame.remote(jpeg, captured_at, self.settings.limits.max_image_pixels)

    async def worker_config(self, tenant_id: str, stream_id: str) -> dict | None:
        """What a (re)started worker needs: the decrypted URL, the tenant, threshold and quality gates."""
        try:
            stream = await self._stream(tenant_id, stream_id)
        except (StreamNotFound, FileNotFoundError):
            return None
        tenant = await self.tenants.tenant.remote(tenant_id)
        # Camera faces are embedded by the default pack's Embedder: a tenant moved onto another pack by a model
        # migration (docs/models.md "Model upgrades") gets its cameras refused (the worker shows this error) rather
        # than searched with another model's vectors.
        info = await self.embedder.info.remote()
        if tenant.model != f"{info['name']}/{info['dim']}":
            raise errors.ModelMismatch(f"cameras embed with the default pack ({info['name']}/{info['dim']}); tenant "
                                       f"{tenant_id} is bound to {tenant.model}")
        threshold = tenant.settings.default_threshold
        if threshold is None:
            threshold = self.settings.verify_threshold
        if threshold is None:
            if self._model_threshold is None:
                self._model_threshold = float((await self.embedder.info.remote())["default_threshold"])
            threshold = self._model_threshold
        return {**stream["config"], "url": stream["url"] or None, "tenant": tenant, "threshold": threshold,
                "match_on": tenant.settings.match_on, "gates": tenant.settings.quality}

    async def _status(self, tenant_id: str, stream: dict) -> dict | None:
        if not stream["config"].get("enabled", True):
            return None
        worker = self._workers.get((tenant_id, stream["stream_id"]))
        if worker is None:
            return {"state": "stopped"}
        try:
            return await asyncio.wait_for(worker.status.remote(), 3.0)
        except Exception:  # restarting (Ray brings it back) or slow: say so
            return {"state": "restarting"}

    async def _ensure_worker(self, tenant_id: str, stream_id: str):
        key = (tenant_id, stream_id)
        worker = self._workers.get(key)
        if worker is None:
            worker = StreamWorkerActor.options(name=worker_name(tenant_id, stream_id), namespace=NAMESPACE,
                                               get_if_exists=True, lifetime="detached", **self.cfg.worker_options
                                               ).remote(tenant_id, stream_id, self.router_handle, self.detector,
                                                        self.embedder, self.tenants, self.cfg.queue_frames)
            self._workers[key] = worker
        await worker.start.remote()
        return worker

    async def _stop_worker(self, tenant_id: str, stream_id: str) -> None:
        worker = self._workers.pop((tenant_id, stream_id), None)
        if worker is None:
            try:
                worker = ray.get_actor(worker_name(tenant_id, stream_id), namespace=NAMESPACE)
            except ValueError:
                return
        try:
            await asyncio.wait_for(worker.stop.remote(), 10)
        except Exception:
            pass
        ray.kill(worker, no_restart=True)
        # The name is released once the kill lands: wait, or a restart (PATCH) would find the dying actor.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ray.get_actor(worker_name(tenant_id, stream_id), namespace=NAMESPACE)
            except ValueError:
                break
            await asyncio.sleep(0.05)

    async def _watch_workers(self) -> None:
        """A worker Ray restarted after a crash comes back idle (its constructor cannot start the loop): the
        ping starts it again, so it resumes within a couple of seconds."""
        while True:
            await asyncio.sleep(2.0)
            for key, worker in list(self._workers.items()):
                try:
                    await asyncio.wait_for(worker.ping.remote(), 5.0)
                except Exception:  # restarting right now: the next round
                    pass

    async def _resume_all(self) -> None:
        """At start: every persisted, enabled stream of every tenant gets its worker (found if still alive)."""
        await asyncio.sleep(1.0)  # let the application finish deploying
        for path in sorted((self.data_dir / "tenants").glob("*/events.db")):
            tenant_id = path.parent.name
            try:
                if self.store(tenant_id).pending_promotions():
                    await self.promotions.recover(await self.tenants.tenant.remote(tenant_id))
            except Exception:
                log.exception("could not finish the pending promotions of tenant %s", tenant_id)
            try:
                for stream in self.store(tenant_id).streams(await self.ciphers(tenant_id)):
                    if stream["config"].get("enabled", True):
                        await self._ensure_worker(tenant_id, stream["stream_id"])
            except Exception:
                log.exception("could not resume the streams of tenant %s", tenant_id)
        for path in sorted((self.data_dir / "tenants").glob("*/events.db")):  # files from before the blind index
            try:
                await self._indexed(path.parent.name)
            except Exception:
                log.exception("could not index the events of tenant %s", path.parent.name)

    async def stop_tenant(self, tenant_id: str) -> int:
        """Before a tenant is deleted: stop its streams and close its file (the tenant's directory goes next)."""
        names = {k[1] for k in self._workers if k[0] == tenant_id}
        try:
            names |= {e["name"].split(":", 2)[2] for e in ray.util.list_named_actors(all_namespaces=True)
                      if e["namespace"] == NAMESPACE and e["name"].startswith(f"stream:{tenant_id}:")}
        except Exception:
            pass
        for stream_id in names:
            await self._stop_worker(tenant_id, stream_id)
        store = self._stores.pop(tenant_id, None)
        if store is not None:
            store.close()
        self._unknowns.pop(tenant_id, None)
        self._ciphers.pop(tenant_id, None)
        self._streams.pop(tenant_id, None)
        for key in [k for k in self._cooldown if k[0] == tenant_id]:
            del self._cooldown[key]
        return len(names)

    # ---- sightings → events ----------------------------------------------------------------------------
    async def record_sighting(self, tenant_id: str, stream_id: str, kind: str, sighting: dict) -> int:
        """A track's decided identity. Returns the sequence number of the event it counts towards."""
        store = self.store(tenant_id)
        ciphers = await self.ciphers(tenant_id)
        if kind == "unknown":
            unknown_id = await self._reidentify(tenant_id, ciphers, sighting.pop("vector"), sighting["last_seen"])
            identity, event_kind = unknown_id, "unknown_seen"
            payload = {"unknown_id": unknown_id}
        else:
            identity, event_kind = sighting["person_id"], "person_seen"
            payload = {"person_id": sighting["person_id"], "external_id": sighting.get("external_id")}
        config = (await self._stream(tenant_id, stream_id))["config"]
        key = (tenant_id, stream_id, identity)
        previous = self._cooldown.get(key)
        if previous is not None and sighting["first_seen"] - previous[1] <= config.get("cooldown_s", 60):
            seq = previous[0]
            current = store.event(ciphers, seq)
            if current is not None:
                store.update_event(ciphers, seq, sighting["last_seen"], {
                    "tracks": current.get("tracks", 1) + 1,
                    "track_length": current.get("track_length", 0) + sighting["track_length"],
                    "best_similarity": _max(current.get("best_similarity"), sighting.get("best_similarity")),
                    "last_offset_s": sighting["last_offset_s"], **_best_frame(current, sighting)})
                self._cooldown[key] = (seq, sighting["last_seen"])
                return seq
        payload.update(best_similarity=_round(sighting.get("best_similarity")), track_length=sighting["track_length"],
                       votes=sighting.get("votes", 0), votes_for=sighting.get("votes_for", 0),
                       decided_by=sighting.get("decided_by"), tracks=1,
                       first_offset_s=sighting["first_offset_s"], last_offset_s=sighting["last_offset_s"],
                       latency_s=round(time.time() - sighting["first_seen"], 4), **_best_frame({}, sighting))
        event = store.add_event(ciphers, event_kind, stream_id, sighting["first_seen"], sighting["last_seen"], payload)
        self._cooldown[key] = (event["seq"], sighting["last_seen"])
        for webhook in store.webhooks(ciphers):
            if not webhook["kinds"] or event_kind in webhook["kinds"]:
                store.add_delivery(webhook["webhook_id"], event["seq"])
        self.webhooks.wake.set()
        condition = self._condition(tenant_id)
        async with condition:
            condition.notify_all()
        return event["seq"]

    async def close_sighting(self, tenant_id: str, stream_id: str, seq: int | None, final: dict) -> None:
        """A track ended: its event's last_seen and track figures are brought up to date."""
        if seq is None or tenant_id not in self._stores and not events_path(self.data_dir, tenant_id).exists():
            return
        store = self.store(tenant_id)
        ciphers = await self.ciphers(tenant_id)
        current = store.event(ciphers, seq)
        if current is None:
            return
        store.update_event(ciphers, seq, final["last_seen"], {
            "best_similarity": _round(_max(current.get("best_similarity"), final.get("best_similarity"))),
            "last_offset_s": max(current.get("last_offset_s", 0), final["last_offset_s"]),
            "track_length": max(current.get("track_length", 0), final["track_length"]), **_best_frame(current, final)})
        for key, (s, last) in list(self._cooldown.items()):
            if s == seq and key[0] == tenant_id:
                self._cooldown[key] = (seq, max(last, final["last_seen"]))

    # ---- re-identification of unknowns ------------------------------------------------------------------
    async def camera_model(self) -> str:
        """The model cameras embed faces with: the default pack's Embedder (worker_config refuses tenants bound to
        another). An unknown's vectors are sealed bound to it."""
        if self._camera_model is None:
            info = await self.embedder.info.remote()
            self._camera_model = f"{info['name']}/{info['dim']}"
        return self._camera_model

    async def _unknown_index(self, tenant_id: str, ciphers: EventKeys) -> UnknownGallery:
        if tenant_id not in self._unknowns:
            store = self.store(tenant_id)
            # Unknowns from before they carried their model were embedded by the cameras' model, the only one
            # that embeds camera faces: bound to it (re-sealed) once, when the file is first read.
            model = await self.camera_model()
            store.bind_legacy_unknowns(ciphers, ciphers.current, model)
            gallery = UnknownGallery(model, self.cfg.max_unknowns_per_tenant)
            for entry in store.unknowns(ciphers).values():
                gallery.put(entry["unknown_id"], entry["vectors"], entry["created_at"], entry["last_seen"], entry["model"])
            self._evict(tenant_id, gallery, room=0)  # a file from before the cap, or a lowered cap
            self._unknowns[tenant_id] = gallery
        return self._unknowns[tenant_id]

    def _evict(self, tenant_id: str, gallery: UnknownGallery, room: int) -> None:
        """The stalest unknowns go (vectors deleted, events kept) until `room` more fit; none being promoted."""
        store = self.store(tenant_id)
        for unknown_id in gallery.evictions(set(store.pending_promotions()), room):
            store.delete_unknown(unknown_id)
            gallery.pop(unknown_id)

    async def _reidentify(self, tenant_id: str, ciphers: EventKeys, vector: np.ndarray, seen_at: float) -> str:
        """The unknown a stranger's track is (cosine at least the tenant's threshold), else a new one; one matrix
        product over every kept sample of the tenant's unknowns (streams/unknowns.py)."""
        threshold = await self.worker_config_threshold(tenant_id)
        gallery = await self._unknown_index(tenant_id, ciphers)
        vector = np.asarray(vector, np.float32)
        unknown_id, similarity = gallery.best(vector)
        if unknown_id is not None and similarity >= threshold:
            gallery.seen(unknown_id, vector, seen_at)
        else:
            self._evict(tenant_id, gallery, room=1)
            unknown_id = "unk_" + uuid.uuid4().hex[:16]
            gallery.put(unknown_id, vector[None], time.time(), seen_at, gallery.model)
        entry = gallery.get(unknown_id)
        self.store(tenant_id).put_unknown(ciphers.current, unknown_id, entry["vectors"], entry["created_at"], entry["last_seen"],
                                          entry["model"])
        return unknown_id

    async def worker_config_threshold(self, tenant_id: str) -> float:
        tenant = await self.tenants.tenant.remote(tenant_id)
        if tenant.settings.default_threshold is not None:
            return tenant.settings.default_threshold
        if self.settings.verify_threshold is not None:
            return self.settings.verify_threshold
        if self._model_threshold is None:
            self._model_threshold = float((await self.embedder.info.remote())["default_threshold"])
        return self._model_threshold

    async def list_unknowns(self, tenant_id: str) -> list[dict]:
        ciphers = await self.ciphers(tenant_id)
        unknowns = await self._unknown_index(tenant_id, ciphers)
        return [{"unknown_id": u["unknown_id"], "created_at": u["created_at"], "last_seen": u["last_seen"],
                 "samples": u["samples"]} for u in sorted(unknowns.values(), key=lambda u: u["created_at"])]

    async def take_unknown(self, tenant, unknown_id: str) -> np.ndarray:
        """The unknown's vectors for the tenant's gallery (a rejection); refused when another model embedded them."""
        return await self.promotions.vectors(tenant, unknown_id)

    async def promote_unknown(self, tenant, unknown_id: str, external_id: str | None, metadata: dict, principal: str) -> dict:
        """The anonymous id becomes a person with its samples as faces and its events naming them, all or
        nothing (streams/promotion.py)."""
        return await self.promotions.promote(tenant, unknown_id, external_id, metadata, principal)

    async def person_merged(self, tenant_id: str, merged_person_id: str, person_id: str, external_id: str | None) -> int:
        """After a merge: the merged person's events now name the surviving person (none if no camera file)."""
        if not events_path(self.data_dir, tenant_id).exists():
            return 0
        return await self._relink(tenant_id, merged_person_id, person_id, external_id)

    async def _relink(self, tenant_id: str, old_id: str, person_id: str, external_id: str | None) -> int:
        """Events that name `old_id` (an anonymous id, a merged person) name the person instead; the cooldowns
        follow. Returns how many events changed."""
        ciphers = await self._indexed(tenant_id)
        relinked = self.store(tenant_id).relink_events(ciphers, old_id, person_id, external_id)
        self._cooldowns_follow(tenant_id, old_id, person_id)
        return relinked

    def _cooldowns_follow(self, tenant_id: str, old_id: str, person_id: str) -> None:
        """Events of `old_id` now name `person_id`: so do the cooldowns running for it."""
        for key in [k for k in self._cooldown if k[0] == tenant_id and k[2] == old_id]:
            self._cooldown[(key[0], key[1], person_id)] = self._cooldown.pop(key)

    async def forget_person(self, tenant_id: str, person_id: str) -> int:
        """A person was deleted: their events are deleted too (not just unlinked)."""
        if not events_path(self.data_dir, tenant_id).exists():
            return 0
        ciphers = await self._indexed(tenant_id)
        for key in [k for k in self._cooldown if k[0] == tenant_id and k[2] == person_id]:
            del self._cooldown[key]
        return self.store(tenant_id).delete_events_of(ciphers, "person_id", person_id)

    # ---- reading events -------------------------------------------------------------------------------------
    async def events(self, tenant_id: str, since: int = 0, limit: int = 100, camera: str | None = None,
                     person: str | None = None, kind: str | None = None) -> list[dict]:
        if not events_path(self.data_dir, tenant_id).exists():
            return []
        ciphers = await (self.ciphers(tenant_id) if person is None else self._indexed(tenant_id))
        return self.store(tenant_id).events(ciphers, since, limit, camera, kind, person)

    async def wait_events(self, tenant_id: str, since: int, timeout_s: float = 15.0, limit: int = 100) -> list[dict]:
        """Events after `since`, waiting up to `timeout_s` for the first one (long poll behind SSE)."""
        found = await self.events(tenant_id, since, limit)
        if found:
            return found
        condition = self._condition(tenant_id)
        try:
            async with condition:
                await asyncio.wait_for(condition.wait(), timeout_s)
        except asyncio.TimeoutError:
            return []
        return await self.events(tenant_id, since, limit)

    async def attendance(self, tenant_id: str, day: dt.date) -> list[dict]:
        """First-in / last-out per person on `day` (UTC), over their person_seen events on every camera."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp()
        if not events_path(self.data_dir, tenant_id).exists():
            return []
        ciphers = await self._indexed(tenant_id)
        return attendance(self.store(tenant_id), ciphers, start, start + 86400)

    # ---- retention ---------------------------------------------------------------------------------------------
    async def enforce_retention(self, tenant_id: str, retention_days: float, now: float | None = None) -> dict:
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        store = self.store(tenant_id)
        expired = store.unknowns_last_seen_before(cutoff)
        for unknown_id in expired:
            store.delete_unknown(unknown_id)
            if tenant_id in self._unknowns:
                self._unknowns[tenant_id].pop(unknown_id)
        return {"events": store.delete_events_before(cutoff), "unknowns": len(expired)}

    async def _retention_forever(self) -> None:
        """Every `tenancy.retention_check_s`: events and unknowns older than each tenant's `retention_days`."""
        while True:
            await asyncio.sleep(self.settings.tenancy.retention_check_s)
            for path in sorted((self.data_dir / "tenants").glob("*/events.db")):
                try:
                    tenant = await self.tenants.tenant.remote(path.parent.name)
                    if tenant.settings.retention_days is not None:
                        await self.enforce_retention(tenant.tenant_id, tenant.settings.retention_days)
                except Exception:  # a tenant deleted meanwhile, or a dependency restarting: next round
                    log.warning("camera retention of %s skipped", path.parent.name, exc_info=True)

    # ---- webhooks ---------------------------------------------------------------------------------------------
    async def add_webhook(self, tenant_id: str, url: str, kinds: list[str], max_attempts: int | None = None) -> dict:
        try:
            http_url = source_kind(url) == "http"
        except ValueError:
            http_url = False
        if not http_url:
            raise InvalidStream("a webhook URL is http:// or https://")
        secret = new_secret()
        ciphers = await self.ciphers(tenant_id, read=False)
        max_attempts = max_attempts or self.cfg.webhook_max_attempts
        webhook_id = self.store(tenant_id).add_webhook(ciphers.current, url, secret, kinds, max_attempts)
        return {"webhook_id": webhook_id, "url": redact_url(url), "kinds": kinds, "max_attempts": max_attempts, "secret": secret}

    async def list_webhooks(self, tenant_id: str) -> list[dict]:
        ciphers = await self.ciphers(tenant_id)
        out = []
        for w in self.store(tenant_id).webhooks(ciphers):
            counts: dict[str, int] = {}
            for d in self.store(tenant_id).deliveries(w["webhook_id"], limit=10**9):
                counts[d["state"]] = counts.get(d["state"], 0) + 1
            out.append({"webhook_id": w["webhook_id"], "url": redact_url(w["url"]), "kinds": w["kinds"],
                        "max_attempts": w["max_attempts"], "created_at": w["created_at"], "deliveries": counts})
        return out

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> None:
        if not self.store(tenant_id).delete_webhook(webhook_id):
            raise StreamNotFound(f"webhook {webhook_id} not found")

    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> dict:
        """A dead letter queued again with its attempts counted afresh; the delivery loop, which looks for due
        deliveries at least twice a second, sends it with the webhook's current URL and secret."""
        await self.deliveries(tenant_id, webhook_id, "dead", 1)  # the webhook is this tenant's
        found = self.store(tenant_id).requeue_dead(webhook_id, delivery_id)
        if found is None:
            raise StreamNotFound(f"delivery {delivery_id} of webhook {webhook_id} not found")
        before, delivery = found
        if before != "dead":
            raise DeliveryNotDead(f"delivery {delivery_id} is {before}, not dead: only a dead letter can be retried")
        return delivery

    async def deliveries(self, tenant_id: str, webhook_id: str, state: str | None, limit: int) -> list[dict]:
        if webhook_id not in {w["webhook_id"] for w in await self.list_webhooks(tenant_id)}:
            raise StreamNotFound(f"webhook {webhook_id} not found")
        return self.store(tenant_id).deliveries(webhook_id, state, limit)


def _max(a, b):
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def _best_frame(current: dict, sighting: dict) -> dict:
    """The event's best face (the source frame of its thumbnail): the sighting's if better than the event's."""
    if sighting.get("best_frame_quality") is None or current.get("best_frame_quality", -1.0) >= sighting["best_frame_quality"]:
        return {}
    return {"best_frame_offset_s": sighting["best_frame_offset_s"], "best_frame_quality": sighting["best_frame_quality"]}


def _round(value):
    return None if value is None else round(float(value), 6)
