"""Index changes between a sharded tenant's actors: the primary forwards each committed change to the shard that
owns it (`Forwarder`) and waits; each shard applies what it is sent (`ForwardedChanges`), idempotently, and
ignores it while inactive (its activation reads the committed file)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
from ray.exceptions import RayActorError

from tenancy.actors.names import NAMESPACE, actor_name
from tenancy.placement import ShardWatch
from tenancy.store import shard_of

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard

log = logging.getLogger("tenancy.actors")


class Forwarder:
    """The primary's side: `shard`'s changes forwarded to the shards that own them; `watch` decides how long a
    shard that Ray is restarting is waited for."""

    def __init__(self, shard: TenantShard, watch: ShardWatch) -> None:
        self.shard, self.watch = shard, watch
        self.handles: dict[int, Any] = {}

    def handle(self, k: int):
        handle = self.handles.get(k)
        if handle is None:
            handle = self.handles[k] = ray.get_actor(actor_name(self.shard.tenant_id, k), namespace=NAMESPACE)
        return handle

    def forward(self, k: int, method: str, *args) -> Any:
        """Run `method` on shard k and wait. A dead shard is skipped: Ray restarts it and it re-reads the
        committed file; so is one Ray is restarting (after its node's loss it may wait long for a node with room:
        the primary does not wait with it, the queued call is idempotent); a missing one is being evicted with the
        whole tenant."""
        tenant_id = self.shard.tenant_id
        try:
            handle = self.handle(k)
            ref = getattr(handle, method).remote(*args)
            if not self.watch.alive_or_gone(ref, handle):
                log.warning("tenant %s: shard %d is restarting; %s skipped, it reloads from the file", tenant_id, k, method)
                return None
            return ray.get(ref)
        except RayActorError as exc:
            log.warning("tenant %s: shard %d unreachable for %s (%s); it heals from the file", tenant_id, k, method, exc)
        except ValueError:
            log.warning("tenant %s: shard %d not found for %s (evicted)", tenant_id, k, method)
        return None

    def forward_all(self, method: str, *args) -> None:
        """An index change every shard applies (rejections, merges): forwarded to shards 1..n-1 in turn."""
        for k in range(1, self.shard.shards):
            self.forward(k, method, *args)

    def apply_add(self, face_id: str, person_id: str, vector: np.ndarray) -> None:
        shard = self.shard
        owner = shard_of(face_id, shard.shards)
        if owner == shard.shard:
            shard.index.add([face_id], [person_id], vector)
        else:
            self.forward(owner, "index_add", [face_id], [person_id], [shard.external_ids.get(person_id)], vector)

    def apply_remove(self, face_ids: list[str], forget_person: str | None = None) -> None:
        shard = self.shard
        by_shard: dict[int, list[str]] = {}
        for face_id in face_ids:
            by_shard.setdefault(shard_of(face_id, shard.shards), []).append(face_id)
        shard.index.remove(by_shard.pop(shard.shard, []))
        targets = range(1, shard.shards) if forget_person is not None else sorted(by_shard)
        for k in targets:
            if k != shard.shard:
                self.forward(k, "index_remove", by_shard.get(k, []), [forget_person] if forget_person else [])

    def apply_reassign(self, face_id: str, person_id: str) -> None:
        """One moved face: reassigned here, or by the shard that holds it."""
        shard = self.shard
        k = shard_of(face_id, shard.shards)
        if k == shard.shard:
            shard.index.reassign([face_id], person_id)
        else:
            self.forward(k, "index_reassign", [face_id], person_id, shard.external_ids.get(person_id))

    def face_vector(self, face_id: str) -> np.ndarray | None:
        """A face's (unit) vector, from this shard's index or the shard that holds it."""
        shard = self.shard
        k = shard_of(face_id, shard.shards)
        return shard.index.vector_of(face_id) if k == shard.shard else self.forward(k, "face_vector", face_id)


class ForwardedChanges:
    """A shard's side: the changes the primary forwards, applied to `shard`'s index and external ids."""

    def __init__(self, shard: TenantShard) -> None:
        self.shard = shard

    def index_add(self, face_ids: list[str], person_ids: list[str], external_ids: list[str | None], vectors: np.ndarray) -> None:
        shard = self.shard
        if shard.index is None:
            return
        vectors = np.asarray(vectors, np.float32).reshape(-1, shard.dim)
        fresh = [i for i, face_id in enumerate(face_ids) if face_id not in shard.index]
        if fresh:
            shard.index.add([face_ids[i] for i in fresh], [person_ids[i] for i in fresh], vectors[fresh])
        for person_id, external_id in zip(person_ids, external_ids):
            shard.external_ids[person_id] = external_id
        shard.report_memory()

    def index_remove(self, face_ids: list[str], forget_persons: list[str] = ()) -> None:
        shard = self.shard
        if shard.index is None:
            return
        shard.index.remove(face_ids)
        shard.index.remove_rejections(persons=forget_persons)
        for person_id in forget_persons:
            shard.external_ids.pop(person_id, None)
        shard.report_memory()

    def index_add_rejections(self, rejection_ids: list[str], person_ids: list[str], vectors: np.ndarray) -> None:
        if self.shard.index is not None:
            self.shard.index.add_rejections(rejection_ids, person_ids, vectors)

    def index_remove_rejections(self, rejection_ids: list[str]) -> None:
        if self.shard.index is not None:
            self.shard.index.remove_rejections(rejection_ids)

    def index_reassign(self, face_ids: list[str], person_id: str, external_id: str | None,
                       merged_person_id: str | None = None) -> None:
        shard = self.shard
        if shard.index is None:
            return
        shard.index.reassign(face_ids, person_id)
        shard.external_ids[person_id] = external_id
        if merged_person_id is not None:
            shard.index.reassign_rejections(merged_person_id, person_id)
            shard.external_ids.pop(merged_person_id, None)
