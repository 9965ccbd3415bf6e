"""The primary's corrections: "not this person" rejections (added, from another person's face, listed, deleted),
two persons merged, a face moved; each audited, then applied to every shard's index (rejections and merges) or
to the owning shard's (a moved face)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kms import DataKey

from tenancy.actors.auditing import ShardAudit
from tenancy.actors.forwarding import Forwarder
from tenancy.store import NotFound, SamePerson

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard


class Corrections:
    """`shard`'s corrections, with the tenant's keys from `data_key`, audited by `audit`, index changes through
    `forwarder`."""

    def __init__(self, shard: TenantShard, data_key: Callable[..., DataKey], audit: ShardAudit, forwarder: Forwarder) -> None:
        self.shard, self.data_key, self.audit, self.forwarder = shard, data_key, audit, forwarder

    def add_rejections(self, person_id: str, vectors: np.ndarray, source: str, principal: str) -> dict:
        shard = self.shard
        vectors = np.asarray(vectors, np.float32).reshape(-1, shard.dim)
        if not len(vectors):
            raise ValueError("no vector to store as a rejection")
        cipher = self.data_key(None).cipher()
        ids = self.audit.audited(principal, "person.reject",
                                 lambda audit: shard.store.add_rejections(person_id, vectors, cipher, source, audit=audit))
        del cipher
        shard.index.add_rejections(ids, [person_id] * len(ids), vectors)
        self.forwarder.forward_all("index_add_rejections", ids, [person_id] * len(ids), vectors)
        shard.report_memory()
        return {"person_id": person_id, "rejection_ids": ids}

    def reject_face(self, person_id: str, face_id: str, principal: str) -> dict:
        """Another person's face (its vector, from the index of the shard holding it) as a rejection of `person_id`."""
        owner = self.shard.store.face_owner(face_id)
        if owner is None:
            raise NotFound(f"face {face_id} not found")
        if owner == person_id:
            raise SamePerson(f"face {face_id} is one of person {person_id}'s own faces")
        vector = self.forwarder.face_vector(face_id)
        if vector is None:
            raise NotFound(f"face {face_id} not found")
        return self.add_rejections(person_id, vector, "face", principal)

    def list_rejections(self, person_id: str) -> dict:
        store = self.shard.store
        if not store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        return {"person_id": person_id, "rejections": store.rejections_of(person_id)}

    def delete_rejection(self, person_id: str, rejection_id: str, principal: str) -> None:
        shard = self.shard
        self.audit.audited(principal, "rejection.delete",
                           lambda audit: shard.store.delete_rejection(person_id, rejection_id, audit=audit))
        shard.index.remove_rejections([rejection_id])
        self.forwarder.forward_all("index_remove_rejections", [rejection_id])

    def merge_persons(self, person_id: str, merged_person_id: str, principal: str) -> dict:
        shard = self.shard
        moved = self.audit.audited(principal, "person.merge",
                                   lambda audit: shard.store.merge_persons(person_id, merged_person_id, audit=audit))
        shard.index.reassign(moved["face_ids"], person_id)
        shard.index.reassign_rejections(merged_person_id, person_id)
        shard.external_ids.pop(merged_person_id, None)
        self.forwarder.forward_all("index_reassign", moved["face_ids"], person_id, shard.external_ids.get(person_id), merged_person_id)
        return {"person_id": person_id, "merged_person_id": merged_person_id, "faces_moved": len(moved["face_ids"]),
                "rejections_moved": moved["rejections"], "external_id": shard.external_ids.get(person_id)}

    def move_face(self, person_id: str, face_id: str, to_person_id: str, principal: str) -> dict:
        self.audit.audited(principal, "face.move",
                           lambda audit: self.shard.store.move_face(person_id, face_id, to_person_id, audit=audit))
        self.forwarder.apply_reassign(face_id, to_person_id)
        return {"face_id": face_id, "person_id": to_person_id}
