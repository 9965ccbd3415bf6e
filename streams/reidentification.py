"""Unknown faces get an anonymous id per tenant (`unk_…`): the same stranger, the same id on every camera and visit.

A track's mean vector is matched against the tenant's unknowns (cosine, the tenant's threshold) in the tenant's
`UnknownGallery` (streams/unknowns.py), kept in memory and written through to events.db.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from streams.event_index import EventKeys
from streams.files import StreamFiles
from streams.stream_model import StreamModel
from streams.unknowns import UnknownGallery


class Reidentification:
    """Needs the tenants' files, the camera model (its id binds an unknown's vectors, its threshold matches them),
    the TenantSupervisor handle and the streams settings (`max_unknowns_per_tenant`)."""

    def __init__(self, files: StreamFiles, model: StreamModel, tenants, cfg) -> None:
        self.files, self.model, self.tenants, self.cfg = files, model, tenants, cfg
        self._galleries: dict[str, UnknownGallery] = {}  # tenant -> its unknowns

    async def gallery(self, tenant_id: str, ciphers: EventKeys) -> UnknownGallery:
        """The tenant's unknowns, read from its file once."""
        if tenant_id not in self._galleries:
            store = self.files.store(tenant_id)
            # Unknowns from before they carried their model were embedded by the cameras' model, the only one
            # that embeds camera faces: bound to it (re-sealed) once, when the file is first read.
            model = await self.model.model_id()
            store.bind_legacy_unknowns(ciphers, ciphers.current, model)
            gallery = UnknownGallery(model, self.cfg.max_unknowns_per_tenant)
            for entry in store.unknowns(ciphers).values():
                gallery.put(entry["unknown_id"], entry["vectors"], entry["created_at"], entry["last_seen"], entry["model"])
            self._evict(tenant_id, gallery, room=0)  # a file from before the cap, or a lowered cap
            self._galleries[tenant_id] = gallery
        return self._galleries[tenant_id]

    def _evict(self, tenant_id: str, gallery: UnknownGallery, room: int) -> None:
        """The stalest unknowns go (vectors deleted, events kept) until `room` more fit; none being promoted."""
        store = self.files.store(tenant_id)
        for unknown_id in gallery.evictions(set(store.pending_promotions()), room):
            store.delete_unknown(unknown_id)
            gallery.pop(unknown_id)

    async def identify(self, tenant_id: str, ciphers: EventKeys, vector: np.ndarray, seen_at: float) -> str:
        """The unknown a stranger's track is (cosine at least the tenant's threshold), else a new one; one matrix
        product over every kept sample of the tenant's unknowns (streams/unknowns.py)."""
        threshold = await self.model.threshold(await self.tenants.tenant.remote(tenant_id))
        gallery = await self.gallery(tenant_id, ciphers)
        vector = np.asarray(vector, np.float32)
        unknown_id, similarity = gallery.best(vector)
        if unknown_id is not None and similarity >= threshold:
            gallery.seen(unknown_id, vector, seen_at)
        else:
            self._evict(tenant_id, gallery, room=1)
            unknown_id = "unk_" + uuid.uuid4().hex[:16]
            gallery.put(unknown_id, vector[None], time.time(), seen_at, gallery.model)
        entry = gallery.get(unknown_id)
        self.files.store(tenant_id).put_unknown(ciphers.current, unknown_id, entry["vectors"], entry["created_at"],
                                                entry["last_seen"], entry["model"])
        return unknown_id

    async def list_unknowns(self, tenant_id: str) -> list[dict]:
        ciphers = await self.files.event_keys(tenant_id)
        unknowns = await self.gallery(tenant_id, ciphers)
        return [{"unknown_id": u["unknown_id"], "created_at": u["created_at"], "last_seen": u["last_seen"],
                 "samples": u["samples"]} for u in sorted(unknowns.values(), key=lambda u: u["created_at"])]

    def expire(self, tenant_id: str, last_seen_before: float) -> int:
        """Retention: the unknowns last seen before the cutoff go (their events are the event log's to expire)."""
        store = self.files.store(tenant_id)
        expired = store.unknowns_last_seen_before(last_seen_before)
        for unknown_id in expired:
            store.delete_unknown(unknown_id)
            if tenant_id in self._galleries:
                self._galleries[tenant_id].pop(unknown_id)
        return len(expired)

    def forget(self, tenant_id: str) -> None:
        self._galleries.pop(tenant_id, None)
