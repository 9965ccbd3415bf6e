"""`TenantShard`, the logic of one shard actor (`TenantShardActor`), as a facade: Ray calls its methods by name,
and each hands the work to the collaborator of that concern (activation, forwarding, audit, persons, faces,
corrections, this shard's reads, rotation and migration steps), all given this shard and what they need."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from kms import DataKey

from securegate import metrics
from tenancy.actors.activation import Activation
from tenancy.actors.auditing import ShardAudit
from tenancy.actors.corrections import Corrections
from tenancy.actors.faces import Faces
from tenancy.actors.forwarding import ForwardedChanges, Forwarder
from tenancy.actors.local_reads import LocalReads
from tenancy.actors.model_steps import MigrationSteps, Resealing
from tenancy.actors.names import NotPrimary, tenant_db_path
from tenancy.actors.persons import Persons
from tenancy.actors.runtime import placement
from tenancy.chain import CheckpointPolicy
from tenancy.index import FaceIndex
from tenancy.operations import Match
from tenancy.placement import ShardWatch
from tenancy.reads import TenantReads
from tenancy.store import TenantStore


class TenantShard:
    """One shard of a tenant's gallery: its encrypted TenantStore on disk and its decrypted in-memory FaceIndex.
    The logic of a TenantShardActor, usable without Ray (tests, tools). `data_key(version, purpose="embeddings")`
    gives the tenant's data keys: embeddings, and the `persons` / `blind-index` keys of tenancy/personal.py."""

    def __init__(self, tenant_id: str, data_dir: str, model: str, dim: int,
                 data_key: Callable[..., DataKey], index_options: dict[str, Any] | None = None,
                 shard: int = 0, shards: int = 1, audit_mac: Callable[[bytes], bytes] | None = None,
                 audit_policy: CheckpointPolicy | None = None, restart_wait_s: float = 20.0) -> None:
        if not 0 <= shard < shards:
            raise ValueError(f"shard {shard} out of range for {shards} shards")
        self.tenant_id, self.model, self.dim = tenant_id, model, dim
        self.shard, self.shards = shard, shards
        self.store: TenantStore | None = None
        self.writer = None  # the primary's claim on the file (tenancy.fence.Claim), once it opened it
        self.index: FaceIndex | None = None
        self.activation_s = 0.0
        self.last_used = time.monotonic()
        # How long the primary waits on another shard that Ray is restarting (tenancy.restart_wait_s): a write goes
        # on without it (it reloads from the file), a read that needs its part gets ShardsUnplaced (503).
        watch = ShardWatch(give_up_s=restart_wait_s)
        self.forwarder = Forwarder(self, watch)
        self.forwarded = ForwardedChanges(self)
        self.audit = ShardAudit(self, audit_mac, audit_policy)
        self.activation = Activation(self, tenant_db_path(data_dir, tenant_id), data_key, dict(index_options or {}),
                                     self.audit, self.forwarder)
        self.persons = Persons(self, data_key, self.audit, self.forwarder)
        self.faces = Faces(self, data_key, self.audit, self.forwarder)
        self.corrections = Corrections(self, data_key, self.audit, self.forwarder)
        self.local = LocalReads(self)
        self.resealing = Resealing(self, data_key, self.audit)
        self.migration = MigrationSteps(self, data_key, self.audit)
        # The whole tenant's audited reads (the primary's): this shard, the others through their handles.
        self.reads = TenantReads(self, self.forwarder.handle, shards, self.record_audit, watch.gather)

    @property
    def primary(self) -> bool:
        return self.shard == 0

    def position(self) -> tuple[int, int]:
        """(shard, shards) this actor was created for; does not activate."""
        return self.shard, self.shards

    def require_primary(self, what: str) -> None:
        if not self.primary:
            raise NotPrimary(f"{what} goes to the primary of tenant {self.tenant_id}, not shard {self.shard}")

    def touch(self) -> None:
        self.activate()
        self.last_used = time.monotonic()

    def report_memory(self) -> None:
        if metrics.exported() and self.index is not None:
            metrics.index_memory_bytes().set(self.index.memory_bytes(), tags={"tenant": self.tenant_id, "shard": str(self.shard)})

    # ---- activation, audit (tenancy/actors/activation.py, auditing.py) --------------------------------------
    def activate(self) -> None:
        """Decrypt the tenant's faces (this shard's only, when sharded) into memory and build the index. Runs on
        first use, including after Ray restarts a crashed actor; a record that fails authentication fails
        activation (fail closed)."""
        self.activation.activate()

    def reconcile(self) -> dict:
        """Shard side: make the in-memory index match this shard's rows in the file (reload when they differ)."""
        return self.activation.reconcile()

    def record_audit(self, principal: str, action: str, outcome: str = "ok", counts: dict | None = None) -> None:
        """An audit entry of its own (reads, refused writes, admin actions on the tenant): durable on return."""
        self.audit.record(principal, action, outcome, counts)

    def audit_checkpoint(self) -> None:
        """The TenantSupervisor's schedule: checkpoint the audit head if the policy says it is due."""
        if self.primary and self.store is not None:
            self.audit.checkpoint()

    # ---- forwarded index changes, shard side (tenancy/actors/forwarding.py) --------------------------------
    def index_add(self, face_ids: list[str], person_ids: list[str], external_ids: list[str | None], vectors: np.ndarray) -> None:
        """Shard side of a forwarded enrolment (idempotent; ignored while inactive: activation reads the file)."""
        self.forwarded.index_add(face_ids, person_ids, external_ids, vectors)

    def index_remove(self, face_ids: list[str], forget_persons: list[str] = ()) -> None:
        """Shard side of a forwarded deletion (unknown ids ignored)."""
        self.forwarded.index_remove(face_ids, forget_persons)

    def index_add_rejections(self, rejection_ids: list[str], person_ids: list[str], vectors: np.ndarray) -> None:
        """Shard side of a new rejection (every shard holds all of them; idempotent; ignored while inactive)."""
        self.forwarded.index_add_rejections(rejection_ids, person_ids, vectors)

    def index_remove_rejections(self, rejection_ids: list[str]) -> None:
        self.forwarded.index_remove_rejections(rejection_ids)

    def index_reassign(self, face_ids: list[str], person_id: str, external_id: str | None,
                       merged_person_id: str | None = None) -> None:
        """Shard side of a merge or a moved face: faces held here (others ignored) now belong to `person_id`; on
        a merge the merged person's rejections move too and the merged person is forgotten."""
        self.forwarded.index_reassign(face_ids, person_id, external_id, merged_person_id)

    def face_vector(self, face_id: str) -> np.ndarray | None:
        """Shard side: the (unit) vector of a face indexed here, or None."""
        self.touch()
        return self.index.vector_of(face_id)

    # ---- persons (tenancy/actors/persons.py) ----------------------------------------------------------------
    def create_person(self, external_id: str | None, metadata: dict, *, principal: str = "internal") -> dict:
        self.require_primary("create_person")
        self.touch()
        return self.persons.create(external_id, metadata, principal)

    def create_person_with_faces(self, person_id: str, external_id: str | None, metadata: dict, vectors: np.ndarray, *,
                                 principal: str = "internal") -> dict:
        """A person and their faces in one durable commit (one audit entry, `person.promote`), under the id the
        caller chose: a camera unknown promoted (streams/promotion.py), whose samples passed the quality gates
        when they were embedded (their scores are not kept). Idempotent on the id: a person already made under
        it (a retried promotion) is answered as it stands, nothing added."""
        self.require_primary("create_person_with_faces")
        self.touch()
        return self.persons.create_with_faces(person_id, external_id, metadata, vectors, principal)

    def get_person(self, person_id: str) -> dict:
        self.require_primary("get_person")
        self.touch()
        return self.persons.get(person_id)

    def list_persons(self, limit: int, cursor: str | None) -> dict:
        self.require_primary("list_persons")
        self.touch()
        return self.persons.list_page(limit, cursor)

    def find_person(self, external_id: str) -> dict:
        """The person with this external id, found through the blind index (tenancy/personal.py): one page
        holding that person, or none."""
        self.require_primary("find_person")
        self.touch()
        return self.persons.find(external_id)

    def delete_person(self, person_id: str, *, principal: str = "internal") -> None:
        self.require_primary("delete_person")
        self.touch()
        self.persons.delete(person_id, principal)

    # ---- faces (tenancy/actors/faces.py) --------------------------------------------------------------------
    def add_face(self, person_id: str, embedding: np.ndarray, det_score: float, quality: float,
                 crop: np.ndarray | None = None, *, principal: str = "internal") -> dict:
        """`crop`: the aligned face, kept sealed beside the vector when the tenant keeps enrolment photos."""
        self.require_primary("add_face")
        self.touch()
        return self.faces.add(person_id, embedding, det_score, quality, crop, principal)

    def delete_face(self, person_id: str, face_id: str, *, principal: str = "internal") -> None:
        self.require_primary("delete_face")
        self.touch()
        self.faces.delete(person_id, face_id, principal)

    def imported_photos(self, photos: list[tuple[str, bytes]]) -> list[dict | None]:
        """Bulk import: for each (external_id, photo SHA-256), the person and face it was imported as, else None."""
        self.require_primary("imported_photos")
        self.touch()
        return self.faces.imported_photos(photos)

    def import_faces(self, items: list[dict], *, principal: str = "internal") -> list[dict]:
        """Bulk import: persons found or created by external id and their faces stored in one durable commit;
        a photo already imported for that person is skipped (tenancy/bulk_import.py)."""
        self.require_primary("import_faces")
        self.touch()
        return self.faces.import_faces(items, principal)

    def expire_faces(self, cutoff: float) -> list[str]:
        """Retention: delete every face created before `cutoff`, exactly as a manual deletion would."""
        self.require_primary("expire_faces")
        self.touch()
        return self.faces.expire(cutoff)

    # ---- corrections: rejections, merge, move (tenancy/actors/corrections.py) ----------------------------------
    def add_rejections(self, person_id: str, vectors: np.ndarray, source: str = "image", *,
                       principal: str = "internal") -> dict:
        """"Not this person": each vector becomes a sealed negative example of the person; a later probe closer
        to one of them than to every face of the person does not match the person (tenancy/index)."""
        self.require_primary("add_rejections")
        self.touch()
        return self.corrections.add_rejections(person_id, vectors, source, principal)

    def reject_face(self, person_id: str, face_id: str, *, principal: str = "internal") -> dict:
        """A rejection from an enrolled face of another person of this tenant (its vector, read from the index
        of the shard holding it; never leaves the actors)."""
        self.require_primary("reject_face")
        self.touch()
        return self.corrections.reject_face(person_id, face_id, principal)

    def list_rejections(self, person_id: str) -> dict:
        self.require_primary("list_rejections")
        self.touch()
        return self.corrections.list_rejections(person_id)

    def delete_rejection(self, person_id: str, rejection_id: str, *, principal: str = "internal") -> None:
        self.require_primary("delete_rejection")
        self.touch()
        self.corrections.delete_rejection(person_id, rejection_id, principal)

    def merge_persons(self, person_id: str, merged_person_id: str, *, principal: str = "internal") -> dict:
        """`merged_person_id` becomes `person_id`: faces and rejections move in one audited transaction (the
        entry names the principal and both ids), the merged person is deleted (its id answers 404 after)."""
        self.require_primary("merge_persons")
        self.touch()
        return self.corrections.merge_persons(person_id, merged_person_id, principal)

    def move_face(self, person_id: str, face_id: str, to_person_id: str, *, principal: str = "internal") -> dict:
        self.require_primary("move_face")
        self.touch()
        return self.corrections.move_face(person_id, face_id, to_person_id, principal)

    # ---- search -------------------------------------------------------------------------------------------
    # The whole tenant's reads (the primary: every shard, audited in the same call) are tenancy/reads.py's; the
    # methods below them answer for this shard alone (tenancy/actors/local_reads.py).
    def search(self, vectors: np.ndarray, top_k: int, threshold: float, match_on: str = "faces", *,
               principal: str = "internal") -> list[list[Match]]:
        """Every face of an image in one call; per face, up to top_k persons at or above threshold, over every
        shard of the tenant; the audit entry (`principal`, counts) is durable when this returns."""
        self.require_primary("search")
        self.touch()
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        return self.reads.search(queries, top_k, threshold, match_on, principal)

    def verify_person(self, vector: np.ndarray, person_id: str, *, principal: str = "internal") -> dict:
        """Similarity of a probe to one person: best over their faces, and to their centroid (audited)."""
        self.require_primary("verify_person")
        self.touch()
        return self.reads.verify(vector, person_id, principal)

    def search_centroids(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        """This (unsharded) tenant's persons by centroid."""
        return self.local.search_centroids(queries, top_k, threshold)

    def search_partial(self, vectors: np.ndarray, top_k: int, threshold: float) -> dict:
        """This shard's top_k persons per query with unrounded similarities (for an exact merge), and the external
        ids of the persons returned."""
        self.touch()
        return self.local.search_partial(vectors, top_k, threshold)

    def verify_local(self, probe: np.ndarray, person_id: str) -> dict:
        """An unsharded tenant's verification, from the index's own centroid."""
        return self.local.verify_local(probe, person_id)

    def verify_partial(self, vector: np.ndarray, person_id: str) -> dict:
        """This shard's part of a verification: face count, best-face similarity and the (float64) sum of the
        person's unit face vectors here. The primary also checks that the person exists."""
        self.touch()
        return self.local.verify_partial(vector, person_id)

    # ---- key rotation, model migration (tenancy/actors/model_steps.py) ---------------------------------------
    def reencrypt_step(self, batch_size: int = 500, *, principal: str = "rotation") -> dict:
        """One batch of a content-key rotation: re-seal up to `batch_size` records under the current key
        version. The TenantSupervisor calls this repeatedly, so searches and enrolments run between batches."""
        self.require_primary("reencrypt_step")
        self.touch()
        return self.resealing.step(batch_size, principal)

    def migration_state(self, model: str) -> dict:
        """Faces, kept crops and shadow vectors for `model` (nothing decrypted); `bound`: the file's model."""
        self.require_primary("migration_state")
        self.touch()
        return self.migration.state(model)

    def migration_embed(self, model: str, dim: int, limit: int, embedder) -> dict:
        """The next `limit` faces lacking a shadow vector for `model`: their kept crops decrypted here, embedded by
        `embedder` (the target pack's Embedder handle) in messages Ray inlines, and sealed into the shadow table
        (durable), so no decrypted crop or vector goes through the object store (tenancy/reembed.py). Counts only."""
        self.require_primary("migration_embed")
        self.touch()
        return self.migration.embed(model, dim, limit, embedder)

    def migration_switch(self, model: str, dim: int, *, principal: str = "migration") -> int | None:
        """The switch, atomically in the file (faces take their shadow vectors, the binding changes), then this
        actor adopts the new model and reloads its index from the file. None: some face still lacks a shadow
        vector (enrolled since the last batch); nothing changed, the caller catches up and tries again."""
        self.require_primary("migration_switch")
        self.touch()
        return self.migration.switch(model, dim, principal)

    def migration_abandon(self) -> None:
        """A migration started again towards another target: the old shadow goes."""
        self.require_primary("migration_abandon")
        self.touch()
        self.migration.abandon()

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def info(self) -> dict:
        self.activate()
        return {"tenant_id": self.tenant_id, "faces": len(self.index), "persons": len(self.external_ids),
                "memory_bytes": self.index.memory_bytes(), "activation_s": round(self.activation_s, 4),
                "idle_s": round(time.monotonic() - self.last_used, 3),
                "key_versions": self.store.key_versions_in_use() if self.store is not None else {},
                "tier": self.index.tier, "placement": placement(), "shard": self.shard, "shards": self.shards,
                "writer_epoch": self.writer.epoch if self.writer is not None else None,
                "rejections": self.index.rejections}

    def tenant_info(self) -> dict:
        """The primary's `info` over every shard of the tenant (faces and memory summed)."""
        self.require_primary("tenant_info")
        return self.reads.info(self.info())

    def pid(self) -> int:
        return os.getpid()

    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_used

    def close(self) -> None:
        if metrics.exported():
            metrics.index_memory_bytes().set(0, tags={"tenant": self.tenant_id, "shard": str(self.shard)})
        if self.store is not None:
            self.audit.checkpoint(force=True)  # at shutdown: the head as it stands is MACed
            self.store.close()
        self.store = self.index = None  # the decrypted vectors go with them
        self.forwarder.handles.clear()


# Restarted by Ray after a crash (activation re-reads the file). Calls in flight when it died fail to
# their callers, who never got an acknowledgement; nothing is retried behind their back.
TenantShardActor = ray.remote(max_restarts=-1, max_task_retries=0)(TenantShard)
