"""The primary's face writes: one face enrolled or deleted, a bulk import (persons found or created by external
id, faces stored in one commit), and retention's expiry; each audited, then applied to the owning shard's index."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kms import DataKey

from tenancy import bulk_import
from tenancy.actors.auditing import ShardAudit
from tenancy.actors.forwarding import Forwarder
from tenancy.audit_log import AuditRecord
from tenancy.personal import PersonKeys

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard


class Faces:
    """`shard`'s faces, with the tenant's keys from `data_key`, audited by `audit`, index changes through
    `forwarder`."""

    def __init__(self, shard: TenantShard, data_key: Callable[..., DataKey], audit: ShardAudit, forwarder: Forwarder) -> None:
        self.shard, self.data_key, self.audit, self.forwarder = shard, data_key, audit, forwarder

    def add(self, person_id: str, embedding: np.ndarray, det_score: float, quality: float,
            crop: np.ndarray | None, principal: str) -> dict:
        shard = self.shard
        vector = np.asarray(embedding, np.float32).reshape(1, -1)
        if vector.shape[1] != shard.dim:
            raise ValueError(f"embedding has {vector.shape[1]} dims, tenant model has {shard.dim}")
        cipher = self.data_key(None).cipher()
        record = self.audit.audited(principal, "face.enrol",
                                    lambda audit: shard.store.add_face(person_id, vector[0], cipher, det_score, quality,
                                                                       audit=audit, crop=crop))
        del cipher
        self.forwarder.apply_add(record.face_id, person_id, vector)
        shard.report_memory()
        return {"face_id": record.face_id, "quality": record.quality}

    def delete(self, person_id: str, face_id: str, principal: str) -> None:
        self.audit.audited(principal, "face.delete", lambda audit: self.shard.store.delete_face(person_id, face_id, audit=audit))
        self.forwarder.apply_remove([face_id])

    def imported_photos(self, photos: list[tuple[str, bytes]]) -> list[dict | None]:
        return bulk_import.find_imported(self.shard.store, PersonKeys(self.data_key), bulk_import.PhotoTags(self.data_key), photos)

    def import_faces(self, items: list[dict], principal: str) -> list[dict]:
        shard = self.shard
        for item in items:
            if np.asarray(item["vector"]).size != shard.dim:
                raise ValueError(f"embedding has {np.asarray(item['vector']).size} dims, tenant model has {shard.dim}")
        cipher, keys, tags = self.data_key(None).cipher(), PersonKeys(self.data_key), bulk_import.PhotoTags(self.data_key)

        def write(audit: AuditRecord) -> list[dict]:
            with shard.store.transaction():
                results = bulk_import.import_faces(shard.store, keys, tags, cipher, items)
                enrolled = sum(r["status"] == "enrolled" for r in results)
                shard.store.record_audit(audit.with_counts(faces=enrolled, persons=sum(r["created_person"] for r in results),
                                                           skipped=len(results) - enrolled))
            return results

        try:
            results = self.audit.audited(principal, "face.import", write)
        finally:
            keys.clear()
            tags.clear()
        for item, result in zip(items, results):
            if result["status"] == "enrolled":
                shard.external_ids[result["person_id"]] = item["external_id"]
                self.forwarder.apply_add(result["face_id"], result["person_id"], np.asarray(item["vector"], np.float32).reshape(1, -1))
        shard.report_memory()
        return results

    def expire(self, cutoff: float) -> list[str]:
        shard = self.shard
        expired = [f.face_id for f in shard.store.faces_created_before(cutoff)]
        if expired:
            self.audit.audited("retention", "face.expire", lambda audit: shard.store.delete_faces(expired, audit=audit))
        self.forwarder.apply_remove(expired)
        # Rejections are another person's face vectors: they expire with the same retention period.
        rejections = shard.store.rejections_created_before(cutoff)
        if rejections:
            self.audit.audited("retention", "rejection.expire", lambda audit: shard.store.delete_rejections(rejections, audit=audit))
            shard.index.remove_rejections(rejections)
            self.forwarder.forward_all("index_remove_rejections", rejections)
        shard.report_memory()
        return expired
