"""The primary's person writes and reads: created (alone, or with faces in one commit), read, listed, found by
external id (the blind index), deleted; each write audited in its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kms import DataKey

from tenancy.actors.auditing import ShardAudit
from tenancy.actors.forwarding import Forwarder
from tenancy.audit_log import AuditRecord
from tenancy.personal import PersonKeys
from tenancy.store import NotFound

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard


class Persons:
    """`shard`'s persons, with the tenant's keys from `data_key`, audited by `audit`, index changes through
    `forwarder`."""

    def __init__(self, shard: TenantShard, data_key: Callable[..., DataKey], audit: ShardAudit, forwarder: Forwarder) -> None:
        self.shard, self.data_key, self.audit, self.forwarder = shard, data_key, audit, forwarder

    def create(self, external_id: str | None, metadata: dict, principal: str) -> dict:
        shard = self.shard
        person = self.audit.audited(principal, "person.create",
                                    lambda audit: shard.store.create_person(external_id, metadata, keys=PersonKeys(self.data_key), audit=audit))
        shard.external_ids[person.person_id] = person.external_id
        return {"person_id": person.person_id}

    def create_with_faces(self, person_id: str, external_id: str | None, metadata: dict, vectors: np.ndarray,
                          principal: str) -> dict:
        shard = self.shard
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != shard.dim:
            raise ValueError(f"embeddings of shape {vectors.shape}, tenant model has {shard.dim} dims")
        if shard.store.has_person(person_id):
            return {"person_id": person_id, "external_id": shard.external_ids.get(person_id),
                    "faces": len(shard.store.faces_of(person_id)), "created": False}
        keys, cipher = PersonKeys(self.data_key), self.data_key(None).cipher()

        def write(audit: AuditRecord):
            with shard.store.transaction():
                person = shard.store.create_person(external_id, metadata, keys=keys, person_id=person_id)
                records = shard.store.add_faces(person_id, list(vectors), cipher, [0.0] * len(vectors), [0.0] * len(vectors))
                shard.store.record_audit(audit.with_counts(persons=1, faces=len(records)))
            return person, records

        try:
            person, records = self.audit.audited(principal, "person.promote", write)
        finally:
            keys.clear()
        shard.external_ids[person_id] = person.external_id
        for record, vector in zip(records, vectors):
            self.forwarder.apply_add(record.face_id, person_id, vector.reshape(1, -1))
        shard.report_memory()
        return {"person_id": person_id, "external_id": person.external_id, "faces": len(records), "created": True}

    def get(self, person_id: str) -> dict:
        store = self.shard.store
        person = store.get_person(person_id, keys=PersonKeys(self.data_key))
        if person is None:
            raise NotFound(f"person {person_id} not found")
        faces = store.faces_of(person_id)
        return {"person_id": person.person_id, "external_id": person.external_id, "metadata": person.metadata,
                "created_at": person.created_at,
                "faces": [{"face_id": f.face_id, "created_at": f.created_at, "quality": f.quality} for f in faces]}

    def list_page(self, limit: int, cursor: str | None) -> dict:
        persons, next_cursor = self.shard.store.list_persons(limit, cursor, keys=PersonKeys(self.data_key))
        return {"persons": [{"person_id": p.person_id, "external_id": p.external_id, "metadata": p.metadata,
                             "created_at": p.created_at} for p in persons],
                "next_cursor": next_cursor}

    def find(self, external_id: str) -> dict:
        person = self.shard.store.get_person_by_external_id(external_id, keys=PersonKeys(self.data_key))
        found = [] if person is None else [{"person_id": person.person_id, "external_id": person.external_id,
                                            "metadata": person.metadata, "created_at": person.created_at}]
        return {"persons": found, "next_cursor": None}

    def delete(self, person_id: str, principal: str) -> None:
        shard = self.shard
        face_ids = self.audit.audited(principal, "person.delete", lambda audit: shard.store.delete_person(person_id, audit=audit))
        shard.index.remove_rejections(persons=[person_id])  # the file's went by cascade; shards: forget_person
        self.forwarder.apply_remove(face_ids, forget_person=person_id if shard.shards > 1 else None)
        shard.external_ids.pop(person_id, None)
