"""Sightings become events; events are read, long-polled (behind SSE) and relinked to persons.

`record_sighting` applies the cooldown per (identity, camera): a sighting within `cooldown_s` of the last one of
the same identity on the same camera extends that event instead of adding one. A new event is queued for each
webhook that wants its kind and wakes the live readers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from streams.attendance import attendance
from streams.files import StreamFiles
from streams.reidentification import Reidentification
from streams.webhooks import WebhookDeliveries


class Cooldowns:
    """The event each (tenant, camera, identity) last counted towards, and when it was last seen."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], tuple[int, float]] = {}  # (tenant, camera, identity) -> (seq, last_seen)

    def get(self, key: tuple[str, str, str]) -> tuple[int, float] | None:
        return self._last.get(key)

    def set(self, key: tuple[str, str, str], seq: int, last_seen: float) -> None:
        self._last[key] = (seq, last_seen)

    def extend(self, tenant_id: str, seq: int, last_seen: float) -> None:
        """Event `seq` was last seen at `last_seen` at the latest: the cooldowns counting towards it run from then."""
        for key, (s, last) in list(self._last.items()):
            if s == seq and key[0] == tenant_id:
                self._last[key] = (seq, max(last, last_seen))

    def follow(self, tenant_id: str, old_id: str, person_id: str) -> None:
        """Events of `old_id` now name `person_id`: so do the cooldowns running for it."""
        for key in [k for k in self._last if k[0] == tenant_id and k[2] == old_id]:
            self._last[(key[0], key[1], person_id)] = self._last.pop(key)

    def drop(self, tenant_id: str, *, stream_id: str | None = None, identity: str | None = None) -> None:
        """The tenant's cooldowns go: all of them, or those of one camera, or of one identity."""
        for key in [k for k in self._last if k[0] == tenant_id and stream_id in (None, k[1]) and identity in (None, k[2])]:
            del self._last[key]


class EventLog:
    """Needs the tenants' files, the re-identification of unknowns, the cameras (a stream's cooldown setting), the
    webhook deliveries (woken by a new event) and the cooldowns."""

    def __init__(self, files: StreamFiles, unknowns: Reidentification, cameras, deliveries: WebhookDeliveries,
                 cooldowns: Cooldowns) -> None:
        self.files, self.unknowns, self.cameras, self.deliveries, self.cooldowns = files, unknowns, cameras, deliveries, cooldowns
        self._new_event: dict[str, asyncio.Condition] = {}

    def _condition(self, tenant_id: str) -> asyncio.Condition:
        return self._new_event.setdefault(tenant_id, asyncio.Condition())

    async def record_sighting(self, tenant_id: str, stream_id: str, kind: str, sighting: dict) -> int:
        """A track's decided identity. Returns the sequence number of the event it counts towards."""
        store = self.files.store(tenant_id)
        ciphers = await self.files.event_keys(tenant_id)
        if kind == "unknown":
            unknown_id = await self.unknowns.identify(tenant_id, ciphers, sighting.pop("vector"), sighting["last_seen"])
            identity, event_kind = unknown_id, "unknown_seen"
            payload = {"unknown_id": unknown_id}
        else:
            identity, event_kind = sighting["person_id"], "person_seen"
            payload = {"person_id": sighting["person_id"], "external_id": sighting.get("external_id")}
        config = (await self.cameras.stream(tenant_id, stream_id))["config"]
        key = (tenant_id, stream_id, identity)
        previous = self.cooldowns.get(key)
        if previous is not None and sighting["first_seen"] - previous[1] <= config.get("cooldown_s", 60):
            seq = previous[0]
            current = store.event(ciphers, seq)
            if current is not None:
                store.update_event(ciphers, seq, sighting["last_seen"], {
                    "tracks": current.get("tracks", 1) + 1,
                    "track_length": current.get("track_length", 0) + sighting["track_length"],
                    "best_similarity": _max(current.get("best_similarity"), sighting.get("best_similarity")),
                    "last_offset_s": sighting["last_offset_s"], **_best_frame(current, sighting)})
                self.cooldowns.set(key, seq, sighting["last_seen"])
                return seq
        payload.update(best_similarity=_round(sighting.get("best_similarity")), track_length=sighting["track_length"],
                       votes=sighting.get("votes", 0), votes_for=sighting.get("votes_for", 0),
                       decided_by=sighting.get("decided_by"), tracks=1,
                       first_offset_s=sighting["first_offset_s"], last_offset_s=sighting["last_offset_s"],
                       latency_s=round(time.time() - sighting["first_seen"], 4), **_best_frame({}, sighting))
        event = store.add_event(ciphers, event_kind, stream_id, sighting["first_seen"], sighting["last_seen"], payload)
        self.cooldowns.set(key, event["seq"], sighting["last_seen"])
        for webhook in store.webhooks(ciphers):
            if not webhook["kinds"] or event_kind in webhook["kinds"]:
                store.add_delivery(webhook["webhook_id"], event["seq"])
        self.deliveries.wake.set()
        condition = self._condition(tenant_id)
        async with condition:
            condition.notify_all()
        return event["seq"]

    async def close_sighting(self, tenant_id: str, stream_id: str, seq: int | None, final: dict) -> None:
        """A track ended: its event's last_seen and track figures are brought up to date."""
        if seq is None or tenant_id not in self.files.stores and not self.files.exists(tenant_id):
            return
        store = self.files.store(tenant_id)
        ciphers = await self.files.event_keys(tenant_id)
        current = store.event(ciphers, seq)
        if current is None:
            return
        store.update_event(ciphers, seq, final["last_seen"], {
            "best_similarity": _round(_max(current.get("best_similarity"), final.get("best_similarity"))),
            "last_offset_s": max(current.get("last_offset_s", 0), final["last_offset_s"]),
            "track_length": max(current.get("track_length", 0), final["track_length"]), **_best_frame(current, final)})
        self.cooldowns.extend(tenant_id, seq, final["last_seen"])

    async def events(self, tenant_id: str, since: int = 0, limit: int = 100, camera: str | None = None,
                     person: str | None = None, kind: str | None = None) -> list[dict]:
        if not self.files.exists(tenant_id):
            return []
        ciphers = await (self.files.event_keys(tenant_id) if person is None else self.files.indexed_event_keys(tenant_id))
        return self.files.store(tenant_id).events(ciphers, since, limit, camera, kind, person)

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
        if not self.files.exists(tenant_id):
            return []
        ciphers = await self.files.indexed_event_keys(tenant_id)
        return attendance(self.files.store(tenant_id), ciphers, start, start + 86400)

    async def relink(self, tenant_id: str, old_id: str, person_id: str, external_id: str | None) -> int:
        """Events that name `old_id` (an anonymous id, a merged person) name the person instead; the cooldowns
        follow. Returns how many events changed."""
        ciphers = await self.files.indexed_event_keys(tenant_id)
        relinked = self.files.store(tenant_id).relink_events(ciphers, old_id, person_id, external_id)
        self.cooldowns.follow(tenant_id, old_id, person_id)
        return relinked

    async def forget_person(self, tenant_id: str, person_id: str) -> int:
        """A person was deleted: their events are deleted too (not just unlinked)."""
        if not self.files.exists(tenant_id):
            return 0
        ciphers = await self.files.indexed_event_keys(tenant_id)
        self.cooldowns.drop(tenant_id, identity=person_id)
        return self.files.store(tenant_id).delete_events_of(ciphers, "person_id", person_id)


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
