"""Each tenant's events.db, opened once, and the ciphers that read and write its sealed rows."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from streams.event_index import EventKeys
from streams.store import StreamStore, events_path

log = logging.getLogger(__name__)


class StreamFiles:
    """Needs the data directory, the KeyService handle and the settings (`keys.cache_ttl_s`)."""

    def __init__(self, data_dir: Path, keys, settings) -> None:
        self.data_dir, self.keys, self.settings = data_dir, keys, settings
        self.stores: dict[str, StreamStore] = {}  # tenant -> its open file (the webhook deliveries walk them)
        self._event_keys: dict[str, tuple[float, EventKeys]] = {}  # tenant -> (expires, ciphers)

    def exists(self, tenant_id: str) -> bool:
        return events_path(self.data_dir, tenant_id).exists()

    def tenant_ids(self) -> list[str]:
        """The tenants that have an events.db, in name order."""
        return [path.parent.name for path in sorted((self.data_dir / "tenants").glob("*/events.db"))]

    def store(self, tenant_id: str) -> StreamStore:
        if tenant_id not in self.stores:
            self.stores[tenant_id] = StreamStore(events_path(self.data_dir, tenant_id), tenant_id)
        return self.stores[tenant_id]

    async def event_keys(self, tenant_id: str, *, read: bool = True) -> EventKeys:
        """The tenant's record ciphers and event index keys: kept for `keys.cache_ttl_s` (as the KeyService keeps
        unwrapped keys), since every sighting reads and writes sealed rows; dropped with the tenant."""
        versions = self.store(tenant_id).key_versions() if read else set()
        now = time.monotonic()
        cached = self._event_keys.get(tenant_id)
        if cached is None or cached[0] < now:
            cached = self._event_keys[tenant_id] = (now + self.settings.keys.cache_ttl_s, await EventKeys(self.keys, tenant_id).load(versions))
        return await cached[1].load(versions, current=False)

    async def indexed_event_keys(self, tenant_id: str) -> EventKeys:
        """`event_keys`, once every event of the tenant's file is in the blind index: a file from before it is tagged
        at first use, in batches off the event loop (sightings go on meanwhile; their events are tagged as written)."""
        ciphers = await self.event_keys(tenant_id)
        store = self.store(tenant_id)
        while await asyncio.to_thread(store.index_legacy_events, ciphers):
            pass
        return ciphers

    async def hold_keys(self, tenant_id: str, hold_s: float = 600.0) -> None:
        """Before a content-key rotation: the ciphers of every version in use stay in memory (at most
        `hold_s`), so `reseal` can open old values even once the rotation has retired their version."""
        if not self.exists(tenant_id):
            return
        ciphers = await self.event_keys(tenant_id)
        self._event_keys[tenant_id] = (time.monotonic() + hold_s, ciphers)

    async def reseal(self, tenant_id: str) -> int:
        """After a content-key rotation started: every sealed value of the tenant's events.db moves to the
        new current version (the faces are re-encrypted by the rotation itself)."""
        if not self.exists(tenant_id):
            return 0
        held = self._event_keys.get(tenant_id)
        ciphers = held[1] if held is not None else await self.event_keys(tenant_id)
        await ciphers.load(self.store(tenant_id).key_versions(), current=True)  # the new current version
        self._event_keys[tenant_id] = (time.monotonic() + self.settings.keys.cache_ttl_s, ciphers)
        resealed = self.store(tenant_id).reseal(ciphers)
        log.info("tenant %s: %d camera records re-sealed under key version %d", tenant_id, resealed, ciphers.current.key_version)
        return resealed

    def close(self, tenant_id: str) -> None:
        """The tenant is going: its file closed, its ciphers dropped."""
        store = self.stores.pop(tenant_id, None)
        if store is not None:
            store.close()
        self._event_keys.pop(tenant_id, None)
