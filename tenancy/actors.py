"""One Ray actor per active tenant shard (TenantShardActor wrapping TenantShard): the tenant's store on disk and
its decrypted FaceIndex in memory.

Activation (on first use, and again after a crash) decrypts the tenant's faces into memory and builds the index; the
data keys it used are dropped right after. Writes go to the file first (durable when they return), then
to memory, so a crash between the two heals at the next activation. The actor is sync: Ray runs its
methods one at a time, which is what keeps the file and the index in step without locks.

Sharded tenants (setting `shards` = N > 1): N actors, `tenant-index:<id>` (shard 0, the primary) and
`tenant-index:<id>#k`. A face lives in shard `shard_of(face_id, N)`. The primary is the only writer of the
tenant's file (persons, faces, deletes, re-encryption, retention); after each commit it forwards the index
change (add vector / remove ids) to the owning shard and waits for it, so a write is searchable everywhere
when it is acknowledged, and forwards from the one primary reach a shard in order. Each shard activates by
decrypting only its own rows. Forwards are idempotent (adds skip ids already indexed, removes ignore unknown
ids, and a shard that is not active ignores them: its activation reads the committed file), so a shard that
crashes and restarts heals from the file. If the primary itself crashes between a commit and a forward, its
re-activation reconciles every shard against the file (face ids only, nothing decrypted unless they differ).
The TenantService scatters searches to all shards and merges (`tenancy.index.merge_search`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import ray

from kms import DataKey, RecordCipher
from ray.exceptions import RayActorError

from securegate import metrics
from tenancy import audit as audit_log
from tenancy import bulk_import, reembed
from tenancy.audit import AuditRecord
from tenancy.chain import CheckpointPolicy
from tenancy.fence import StaleWriter
from tenancy.index import FaceIndex
from tenancy.operations import Match
from tenancy.personal import PersonKeys
from tenancy.placement import ShardWatch
from tenancy.reads import TenantReads
from tenancy.store import NotFound, SamePerson, TenantStore, shard_of

log = logging.getLogger(__name__)

NAMESPACE = "securegate"


class KeySource(Protocol):
    """Where data keys come from: the KeyService deployment's handle (or anything shaped like it)."""

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> DataKey: ...


def actor_name(tenant_id: str, shard: int = 0) -> str:
    """Shard 0 (the primary, and the only actor of an unsharded tenant) keeps the historical name."""
    return f"tenant-index:{tenant_id}" if shard == 0 else f"tenant-index:{tenant_id}#{shard}"


class NotPrimary(RuntimeError):
    """A write or person read reached a shard other than the primary (a routing bug, never a client error)."""


def tenant_db_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "embeddings.db"


class CipherCache:
    """Record ciphers by key version for one operation (an activation, a rotation step), fetched from the
    key source once each; `clear()` drops the key material when the operation ends."""

    def __init__(self, data_key: Callable[[int | None], DataKey]) -> None:
        self._data_key = data_key
        self._ciphers: dict[int, RecordCipher] = {}

    def get(self, version: int) -> RecordCipher:
        if version not in self._ciphers:
            self._ciphers[version] = self._data_key(version).cipher()
        return self._ciphers[version]

    def current(self) -> RecordCipher:
        cipher = self._data_key(None).cipher()
        self._ciphers[cipher.key_version] = cipher
        return cipher

    def clear(self) -> None:
        self._ciphers.clear()


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
        self._shard_handles: dict[int, Any] = {}
        self._embedders: dict[Any, Any] = {}  # a model migration's target Embedder handles, by deployment
        self._path = tenant_db_path(data_dir, tenant_id)
        self._data_key = data_key
        self._index_options = dict(index_options or {})
        # The provider's MAC for this tenant's audit checkpoints (None: entries are hash-chained only).
        self._audit_mac = audit_mac
        self._audit_policy = audit_policy or CheckpointPolicy()
        self.store: TenantStore | None = None
        self.writer = None  # the primary's claim on the file (tenancy.fence.Claim), once it opened it
        self.index: FaceIndex | None = None
        self.activation_s = 0.0
        self.last_used = time.monotonic()
        # How long the primary waits on another shard that Ray is restarting (tenancy.restart_wait_s): a write goes
        # on without it (it reloads from the file), a read that needs its part gets ShardsUnplaced (503).
        self._shard_watch = ShardWatch(give_up_s=restart_wait_s)
        # The whole tenant's audited reads (the primary's): this shard, the others through their handles.
        self.reads = TenantReads(self, self._shard_handle, shards, self.record_audit, self._shard_watch.gather)

    @property
    def primary(self) -> bool:
        return self.shard == 0

    def position(self) -> tuple[int, int]:
        """(shard, shards) this actor was created for; does not activate."""
        return self.shard, self.shards

    def activate(self) -> None:
        """Decrypt the tenant's faces (this shard's only, when sharded) into memory and build the index. Runs on
        first use, including after Ray restarts a crashed actor; a record that fails authentication fails
        activation (fail closed)."""
        if self.index is not None:
            return
        started = time.perf_counter()
        store = self._open_store() if self.primary else TenantStore.open(self._path, self.tenant_id, self.model, self.dim)
        ciphers = CipherCache(self._data_key)
        person_keys = PersonKeys(self._data_key)
        try:
            loaded = store.load_all(ciphers.get, (self.shard, self.shards) if self.shards > 1 else None)
            rejections = store.load_rejections(ciphers.get)  # all of them, on every shard (tenancy/index.py)
            if self.primary:  # persons written in clear before schema v3 are sealed now, by the file's one writer
                sealed = store.seal_legacy_persons(person_keys)
                if sealed:
                    log.info("tenant %s: sealed %d persons stored in clear by an older version", self.tenant_id, sealed)
            wanted = None if self.primary else set(loaded.person_ids)  # a shard names only its own persons
            external_ids = store.external_ids(person_keys, wanted)
        except BaseException:
            if store is not self.store:
                store.close()
            raise
        finally:
            ciphers.clear()  # key material is not kept beyond activation
            person_keys.clear()
        self.index = FaceIndex.build(loaded.face_ids, loaded.person_ids, loaded.vectors.reshape(-1, self.dim), **self._index_options)
        self.index.add_rejections(rejections.face_ids, rejections.person_ids, rejections.vectors)
        self.external_ids = external_ids
        if not self.primary:
            store.close()  # one writer per file: a shard only reads it, at activation and reconciliation
        self.activation_s = time.perf_counter() - started
        self._report_memory()
        log.info("tenant %s shard %d/%d active: %d faces in %.2fs", self.tenant_id, self.shard, self.shards,
                 len(self.index), self.activation_s)
        if self.primary and self.shards > 1 and _reconstructed():
            # A crash of the primary may have fallen between a commit and its forward: bring every shard in
            # line with the file before serving.
            for k in range(1, self.shards):
                self._forward(k, "reconcile")

    def _open_store(self) -> TenantStore:
        """The primary's store (the file's one writer), opened without decrypting anything; a new or reopened
        audit chain gets its head checkpointed (a crash may have left entries after the last checkpoint)."""
        if self.store is None:  # (tenancy.sqlite.connect creates missing directories 0700)
            store = TenantStore.open(self._path, self.tenant_id, self.model, self.dim)
            try:  # from here on a predecessor that is still alive somewhere cannot write (tenancy/fence.py)
                self.writer = store.claim_writer()
            except BaseException:
                store.close()
                raise
            self.store = store
            self._checkpoint_audit(force=True)
        return self.store

    def _checkpoint_audit(self, force: bool = False) -> None:
        """Checkpoint the audit head when due. After the write committed: a provider outage delays the MAC
        (the entries stay hash-linked, covered by the next checkpoint) but never fails or undoes the write."""
        try:
            self.store.checkpoint_audit(self._audit_mac, self._audit_policy, force=force)
        except Exception:
            log.warning("tenant %s: audit checkpoint failed; the next one covers these entries", self.tenant_id, exc_info=True)

    def _audited(self, principal: str, action: str, write: Callable[[AuditRecord], Any]) -> Any:
        """Run `write(record)`, which chains `record` in the write's own transaction. A refused write commits
        nothing, so its audit entry (outcome: the error's name) is appended on its own."""
        record = AuditRecord(principal, action)
        try:
            result = write(record)
        except StaleWriter:
            raise  # the file is a newer actor's: not even the refusal is written from here
        except Exception as exc:
            self.record_audit(principal, action, type(exc).__name__)
            raise
        self._checkpoint_audit()
        return result

    def record_audit(self, principal: str, action: str, outcome: str = "ok", counts: dict | None = None) -> None:
        """An audit entry of its own (reads, refused writes, admin actions on the tenant): durable on return."""
        self._require_primary("record_audit")
        self._open_store().record_audit(AuditRecord(principal, action, outcome, dict(counts or {})))
        self._checkpoint_audit()

    def audit_checkpoint(self) -> None:
        """The router's schedule: checkpoint the audit head if the policy says it is due."""
        if self.primary and self.store is not None:
            self._checkpoint_audit()

    def reconcile(self) -> dict:
        """Shard side: make the in-memory index match this shard's rows in the file (reload when they differ)."""
        if self.index is None:
            self.activate()
            return {"reloaded": True}
        with TenantStore.open(self._path, self.tenant_id, self.model, self.dim) as store:
            stored = store.face_ids((self.shard, self.shards))
            rejections = store.rejection_ids()
        if stored == self.index.face_id_set() and rejections == self.index.rejection_id_set():
            return {"reloaded": False}
        log.warning("tenant %s shard %d out of step with the file: reloading", self.tenant_id, self.shard)
        self.close()
        self.activate()
        return {"reloaded": True}

    # ---- forwarding (primary -> shards) ----------------------------------------------------------------------
    def _shard_handle(self, k: int):
        handle = self._shard_handles.get(k)
        if handle is None:
            handle = self._shard_handles[k] = ray.get_actor(actor_name(self.tenant_id, k), namespace=NAMESPACE)
        return handle

    def _forward(self, k: int, method: str, *args) -> Any:
        """Run `method` on shard k and wait. A dead shard is skipped: Ray restarts it and it re-reads the
        committed file; so is one Ray is restarting (after its node's loss it may wait long for a node with room:
        the primary does not wait with it, the queued call is idempotent); a missing one is being evicted with the
        whole tenant."""
        try:
            handle = self._shard_handle(k)
            ref = getattr(handle, method).remote(*args)
            if not self._shard_watch.alive_or_gone(ref, handle):
                log.warning("tenant %s: shard %d is restarting; %s skipped, it reloads from the file", self.tenant_id, k, method)
                return None
            return ray.get(ref)
        except RayActorError as exc:
            log.warning("tenant %s: shard %d unreachable for %s (%s); it heals from the file", self.tenant_id, k, method, exc)
        except ValueError:
            log.warning("tenant %s: shard %d not found for %s (evicted)", self.tenant_id, k, method)
        return None

    def _apply_add(self, face_id: str, person_id: str, vector: np.ndarray) -> None:
        owner = shard_of(face_id, self.shards)
        if owner == self.shard:
            self.index.add([face_id], [person_id], vector)
        else:
            self._forward(owner, "index_add", [face_id], [person_id], [self.external_ids.get(person_id)], vector)

    def _apply_remove(self, face_ids: list[str], forget_person: str | None = None) -> None:
        by_shard: dict[int, list[str]] = {}
        for face_id in face_ids:
            by_shard.setdefault(shard_of(face_id, self.shards), []).append(face_id)
        self.index.remove(by_shard.pop(self.shard, []))
        targets = range(1, self.shards) if forget_person is not None else sorted(by_shard)
        for k in targets:
            if k != self.shard:
                self._forward(k, "index_remove", by_shard.get(k, []), [forget_person] if forget_person else [])

    def index_add(self, face_ids: list[str], person_ids: list[str], external_ids: list[str | None], vectors: np.ndarray) -> None:
        """Shard side of a forwarded enrolment (idempotent; ignored while inactive: activation reads the file)."""
        if self.index is None:
            return
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        fresh = [i for i, face_id in enumerate(face_ids) if face_id not in self.index]
        if fresh:
            self.index.add([face_ids[i] for i in fresh], [person_ids[i] for i in fresh], vectors[fresh])
        for person_id, external_id in zip(person_ids, external_ids):
            self.external_ids[person_id] = external_id
        self._report_memory()

    def index_remove(self, face_ids: list[str], forget_persons: list[str] = ()) -> None:
        """Shard side of a forwarded deletion (unknown ids ignored)."""
        if self.index is None:
            return
        self.index.remove(face_ids)
        self.index.remove_rejections(persons=forget_persons)
        for person_id in forget_persons:
            self.external_ids.pop(person_id, None)
        self._report_memory()

    def index_add_rejections(self, rejection_ids: list[str], person_ids: list[str], vectors: np.ndarray) -> None:
        """Shard side of a new rejection (every shard holds all of them; idempotent; ignored while inactive)."""
        if self.index is not None:
            self.index.add_rejections(rejection_ids, person_ids, vectors)

    def index_remove_rejections(self, rejection_ids: list[str]) -> None:
        if self.index is not None:
            self.index.remove_rejections(rejection_ids)

    def index_reassign(self, face_ids: list[str], person_id: str, external_id: str | None,
                       merged_person_id: str | None = None) -> None:
        """Shard side of a merge or a moved face: faces held here (others ignored) now belong to `person_id`; on
        a merge the merged person's rejections move too and the merged person is forgotten."""
        if self.index is None:
            return
        self.index.reassign(face_ids, person_id)
        self.external_ids[person_id] = external_id
        if merged_person_id is not None:
            self.index.reassign_rejections(merged_person_id, person_id)
            self.external_ids.pop(merged_person_id, None)

    def face_vector(self, face_id: str) -> np.ndarray | None:
        """Shard side: the (unit) vector of a face indexed here, or None."""
        self._touch()
        return self.index.vector_of(face_id)

    def _forward_all(self, method: str, *args) -> None:
        """An index change every shard applies (rejections, merges): forwarded to shards 1..n-1 in turn."""
        for k in range(1, self.shards):
            self._forward(k, method, *args)

    def _require_primary(self, what: str) -> None:
        if not self.primary:
            raise NotPrimary(f"{what} goes to the primary of tenant {self.tenant_id}, not shard {self.shard}")

    def _touch(self) -> None:
        self.activate()
        self.last_used = time.monotonic()

    def _report_memory(self) -> None:
        if metrics.exported() and self.index is not None:
            metrics.index_memory_bytes().set(self.index.memory_bytes(), tags={"tenant": self.tenant_id, "shard": str(self.shard)})

    # ---- persons ------------------------------------------------------------------------------------------
    def create_person(self, external_id: str | None, metadata: dict, *, principal: str = "internal") -> dict:
        self._require_primary("create_person")
        self._touch()
        person = self._audited(principal, "person.create",
                               lambda audit: self.store.create_person(external_id, metadata, keys=PersonKeys(self._data_key), audit=audit))
        self.external_ids[person.person_id] = person.external_id
        return {"person_id": person.person_id}

    def create_person_with_faces(self, person_id: str, external_id: str | None, metadata: dict, vectors: np.ndarray, *,
                                 principal: str = "internal") -> dict:
        """A person and their faces in one durable commit (one audit entry, `person.promote`), under the id the
        caller chose: a camera unknown promoted (streams/promotion.py), whose samples passed the quality gates
        when they were embedded (their scores are not kept). Idempotent on the id: a person already made under
        it (a retried promotion) is answered as it stands, nothing added."""
        self._require_primary("create_person_with_faces")
        self._touch()
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"embeddings of shape {vectors.shape}, tenant model has {self.dim} dims")
        if self.store.has_person(person_id):
            return {"person_id": person_id, "external_id": self.external_ids.get(person_id),
                    "faces": len(self.store.faces_of(person_id)), "created": False}
        keys, cipher = PersonKeys(self._data_key), self._data_key(None).cipher()

        def write(audit: AuditRecord):
            with self.store.transaction():
                person = self.store.create_person(external_id, metadata, keys=keys, person_id=person_id)
                records = self.store.add_faces(person_id, list(vectors), cipher, [0.0] * len(vectors), [0.0] * len(vectors))
                self.store.record_audit(audit.with_counts(persons=1, faces=len(records)))
            return person, records

        try:
            person, records = self._audited(principal, "person.promote", write)
        finally:
            keys.clear()
        self.external_ids[person_id] = person.external_id
        for record, vector in zip(records, vectors):
            self._apply_add(record.face_id, person_id, vector.reshape(1, -1))
        self._report_memory()
        return {"person_id": person_id, "external_id": person.external_id, "faces": len(records), "created": True}

    def get_person(self, person_id: str) -> dict:
        self._require_primary("get_person")
        self._touch()
        person = self.store.get_person(person_id, keys=PersonKeys(self._data_key))
        if person is None:
            raise NotFound(f"person {person_id} not found")
        faces = self.store.faces_of(person_id)
        return {"person_id": person.person_id, "external_id": person.external_id, "metadata": person.metadata,
                "created_at": person.created_at,
                "faces": [{"face_id": f.face_id, "created_at": f.created_at, "quality": f.quality} for f in faces]}

    def list_persons(self, limit: int, cursor: str | None) -> dict:
        self._require_primary("list_persons")
        self._touch()
        persons, next_cursor = self.store.list_persons(limit, cursor, keys=PersonKeys(self._data_key))
        return {"persons": [{"person_id": p.person_id, "external_id": p.external_id, "metadata": p.metadata,
                             "created_at": p.created_at} for p in persons],
                "next_cursor": next_cursor}

    def find_person(self, external_id: str) -> dict:
        """The person with this external id, found through the blind index (tenancy/personal.py): one page
        holding that person, or none."""
        self._require_primary("find_person")
        self._touch()
        person = self.store.get_person_by_external_id(external_id, keys=PersonKeys(self._data_key))
        found = [] if person is None else [{"person_id": person.person_id, "external_id": person.external_id,
                                            "metadata": person.metadata, "created_at": person.created_at}]
        return {"persons": found, "next_cursor": None}

    def delete_person(self, person_id: str, *, principal: str = "internal") -> None:
        self._require_primary("delete_person")
        self._touch()
        face_ids = self._audited(principal, "person.delete", lambda audit: self.store.delete_person(person_id, audit=audit))
        self.index.remove_rejections(persons=[person_id])  # the file's went by cascade; shards: forget_person
        self._apply_remove(face_ids, forget_person=person_id if self.shards > 1 else None)
        self.external_ids.pop(person_id, None)

    # ---- faces --------------------------------------------------------------------------------------------
    def add_face(self, person_id: str, embedding: np.ndarray, det_score: float, quality: float,
                 crop: np.ndarray | None = None, *, principal: str = "internal") -> dict:
        """`crop`: the aligned face, kept sealed beside the vector when the tenant keeps enrolment photos."""
        self._require_primary("add_face")
        self._touch()
        vector = np.asarray(embedding, np.float32).reshape(1, -1)
        if vector.shape[1] != self.dim:
            raise ValueError(f"embedding has {vector.shape[1]} dims, tenant model has {self.dim}")
        cipher = self._data_key(None).cipher()
        record = self._audited(principal, "face.enrol",
                               lambda audit: self.store.add_face(person_id, vector[0], cipher, det_score, quality,
                                                                 audit=audit, crop=crop))
        del cipher
        self._apply_add(record.face_id, person_id, vector)
        self._report_memory()
        return {"face_id": record.face_id, "quality": record.quality}

    def delete_face(self, person_id: str, face_id: str, *, principal: str = "internal") -> None:
        self._require_primary("delete_face")
        self._touch()
        self._audited(principal, "face.delete", lambda audit: self.store.delete_face(person_id, face_id, audit=audit))
        self._apply_remove([face_id])

    def imported_photos(self, photos: list[tuple[str, bytes]]) -> list[dict | None]:
        """Bulk import: for each (external_id, photo SHA-256), the person and face it was imported as, else None."""
        self._require_primary("imported_photos")
        self._touch()
        return bulk_import.find_imported(self.store, PersonKeys(self._data_key), bulk_import.PhotoTags(self._data_key), photos)

    def import_faces(self, items: list[dict], *, principal: str = "internal") -> list[dict]:
        """Bulk import: persons found or created by external id and their faces stored in one durable commit;
        a photo already imported for that person is skipped (tenancy/bulk_import.py)."""
        self._require_primary("import_faces")
        self._touch()
        for item in items:
            if np.asarray(item["vector"]).size != self.dim:
                raise ValueError(f"embedding has {np.asarray(item['vector']).size} dims, tenant model has {self.dim}")
        cipher, keys, tags = self._data_key(None).cipher(), PersonKeys(self._data_key), bulk_import.PhotoTags(self._data_key)

        def write(audit: AuditRecord) -> list[dict]:
            with self.store.transaction():
                results = bulk_import.import_faces(self.store, keys, tags, cipher, items)
                enrolled = sum(r["status"] == "enrolled" for r in results)
                self.store.record_audit(audit.with_counts(faces=enrolled, persons=sum(r["created_person"] for r in results),
                                                          skipped=len(results) - enrolled))
            return results

        try:
            results = self._audited(principal, "face.import", write)
        finally:
            keys.clear()
            tags.clear()
        for item, result in zip(items, results):
            if result["status"] == "enrolled":
                self.external_ids[result["person_id"]] = item["external_id"]
                self._apply_add(result["face_id"], result["person_id"], np.asarray(item["vector"], np.float32).reshape(1, -1))
        self._report_memory()
        return results

    def expire_faces(self, cutoff: float) -> list[str]:
        """Retention: delete every face created before `cutoff`, exactly as a manual deletion would."""
        self._require_primary("expire_faces")
        self._touch()
        expired = [f.face_id for f in self.store.faces_created_before(cutoff)]
        if expired:
            self._audited("retention", "face.expire", lambda audit: self.store.delete_faces(expired, audit=audit))
        self._apply_remove(expired)
        # Rejections are another person's face vectors: they expire with the same retention period.
        rejections = self.store.rejections_created_before(cutoff)
        if rejections:
            self._audited("retention", "rejection.expire", lambda audit: self.store.delete_rejections(rejections, audit=audit))
            self.index.remove_rejections(rejections)
            self._forward_all("index_remove_rejections", rejections)
        self._report_memory()
        return expired

    # ---- corrections: rejections, merge, move ----------------------------------------------------------------
    def add_rejections(self, person_id: str, vectors: np.ndarray, source: str = "image", *,
                       principal: str = "internal") -> dict:
        """"Not this person": each vector becomes a sealed negative example of the person; a later probe closer
        to one of them than to every face of the person does not match the person (tenancy/index.py)."""
        self._require_primary("add_rejections")
        self._touch()
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        if not len(vectors):
            raise ValueError("no vector to store as a rejection")
        cipher = self._data_key(None).cipher()
        ids = self._audited(principal, "person.reject",
                            lambda audit: self.store.add_rejections(person_id, vectors, cipher, source, audit=audit))
        del cipher
        self.index.add_rejections(ids, [person_id] * len(ids), vectors)
        self._forward_all("index_add_rejections", ids, [person_id] * len(ids), vectors)
        self._report_memory()
        return {"person_id": person_id, "rejection_ids": ids}

    def reject_face(self, person_id: str, face_id: str, *, principal: str = "internal") -> dict:
        """A rejection from an enrolled face of another person of this tenant (its vector, read from the index
        of the shard holding it; never leaves the actors)."""
        self._require_primary("reject_face")
        self._touch()
        owner = self.store.face_owner(face_id)
        if owner is None:
            raise NotFound(f"face {face_id} not found")
        if owner == person_id:
            raise SamePerson(f"face {face_id} is one of person {person_id}'s own faces")
        k = shard_of(face_id, self.shards)
        vector = self.index.vector_of(face_id) if k == self.shard else self._forward(k, "face_vector", face_id)
        if vector is None:
            raise NotFound(f"face {face_id} not found")
        return self.add_rejections(person_id, vector, "face", principal=principal)

    def list_rejections(self, person_id: str) -> dict:
        self._require_primary("list_rejections")
        self._touch()
        if not self.store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        return {"person_id": person_id, "rejections": self.store.rejections_of(person_id)}

    def delete_rejection(self, person_id: str, rejection_id: str, *, principal: str = "internal") -> None:
        self._require_primary("delete_rejection")
        self._touch()
        self._audited(principal, "rejection.delete",
                      lambda audit: self.store.delete_rejection(person_id, rejection_id, audit=audit))
        self.index.remove_rejections([rejection_id])
        self._forward_all("index_remove_rejections", [rejection_id])

    def merge_persons(self, person_id: str, merged_person_id: str, *, principal: str = "internal") -> dict:
        """`merged_person_id` becomes `person_id`: faces and rejections move in one audited transaction (the
        entry names the principal and both ids), the merged person is deleted (its id answers 404 after)."""
        self._require_primary("merge_persons")
        self._touch()
        moved = self._audited(principal, "person.merge",
                              lambda audit: self.store.merge_persons(person_id, merged_person_id, audit=audit))
        self.index.reassign(moved["face_ids"], person_id)
        self.index.reassign_rejections(merged_person_id, person_id)
        self.external_ids.pop(merged_person_id, None)
        self._forward_all("index_reassign", moved["face_ids"], person_id, self.external_ids.get(person_id), merged_person_id)
        return {"person_id": person_id, "merged_person_id": merged_person_id, "faces_moved": len(moved["face_ids"]),
                "rejections_moved": moved["rejections"], "external_id": self.external_ids.get(person_id)}

    def move_face(self, person_id: str, face_id: str, to_person_id: str, *, principal: str = "internal") -> dict:
        self._require_primary("move_face")
        self._touch()
        self._audited(principal, "face.move",
                      lambda audit: self.store.move_face(person_id, face_id, to_person_id, audit=audit))
        k = shard_of(face_id, self.shards)
        if k == self.shard:
            self.index.reassign([face_id], to_person_id)
        else:
            self._forward(k, "index_reassign", [face_id], to_person_id, self.external_ids.get(to_person_id))
        return {"face_id": face_id, "person_id": to_person_id}

    # ---- search -------------------------------------------------------------------------------------------
    # The whole tenant's reads (the primary: every shard, audited in the same call) are tenancy/reads.py's; the
    # methods below them answer for this shard alone.
    def search(self, vectors: np.ndarray, top_k: int, threshold: float, match_on: str = "faces", *,
               principal: str = "internal") -> list[list[Match]]:
        """Every face of an image in one call; per face, up to top_k persons at or above threshold, over every
        shard of the tenant; the audit entry (`principal`, counts) is durable when this returns."""
        self._require_primary("search")
        self._touch()
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        return self.reads.search(queries, top_k, threshold, match_on, principal)

    def verify_person(self, vector: np.ndarray, person_id: str, *, principal: str = "internal") -> dict:
        """Similarity of a probe to one person: best over their faces, and to their centroid (audited)."""
        self._require_primary("verify_person")
        self._touch()
        return self.reads.verify(vector, person_id, principal)

    def search_centroids(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        """This (unsharded) tenant's persons by centroid."""
        started = time.perf_counter()
        results = [[Match(person_id, self.external_ids.get(person_id), None, round(float(similarity), 6))
                    for person_id, similarity in per_face]
                   for per_face in self.index.search_centroids(queries, top_k, threshold)]
        if metrics.exported():
            metrics.search_seconds().observe(time.perf_counter() - started, tags={"tier": "centroid"})
        return results

    def search_partial(self, vectors: np.ndarray, top_k: int, threshold: float) -> dict:
        """This shard's top_k persons per query with unrounded similarities (for an exact merge), and the external
        ids of the persons returned."""
        self._touch()
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        started = time.perf_counter()
        matches = self.index.search(queries, top_k, threshold)
        if metrics.exported():
            metrics.search_seconds().observe(time.perf_counter() - started, tags={"tier": self.index.tier})
        persons = {match.person_id for per_face in matches for match in per_face}
        return {"matches": matches, "external_ids": {p: self.external_ids.get(p) for p in persons}}

    def verify_local(self, probe: np.ndarray, person_id: str) -> dict:
        """An unsharded tenant's verification, from the index's own centroid."""
        if not self.store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        centroid = self.index.centroid(person_id)
        faces = self.index.person_vectors(person_id)
        return {
            "faces": int(len(faces)),
            "best_face_similarity": float(np.max(faces @ probe)) if len(faces) else None,
            "centroid_similarity": float(centroid @ probe) if centroid is not None else None,
            "best_rejection_similarity": self.index.rejection_similarity(person_id, probe),
        }

    def verify_partial(self, vector: np.ndarray, person_id: str) -> dict:
        """This shard's part of a verification: face count, best-face similarity and the (float64) sum of the
        person's unit face vectors here. The primary also checks that the person exists."""
        self._touch()
        if self.primary and not self.store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        probe = np.asarray(vector, np.float32).reshape(-1)
        faces = self.index.person_vectors(person_id)
        return {"faces": int(len(faces)),
                "best_face_similarity": float(np.max(faces @ probe)) if len(faces) else None,
                "sum": faces.sum(axis=0, dtype=np.float64) if len(faces) else None,
                # every shard holds all rejections: the caller takes the primary's
                "best_rejection_similarity": self.index.rejection_similarity(person_id, probe)}

    # ---- key rotation ---------------------------------------------------------------------------------
    def reencrypt_step(self, batch_size: int = 500, *, principal: str = "rotation") -> dict:
        """One batch of a content-key rotation: re-seal up to `batch_size` records under the current key
        version. The router calls this repeatedly, so searches and enrolments run between batches."""
        self._require_primary("reencrypt_step")
        self._touch()
        ciphers = CipherCache(self._data_key)
        current = ciphers.current()
        # Persons first (their fields and blind-index tags), a batch per step like the faces; the faces' last
        # step truncates the WAL for both.
        person_keys = PersonKeys(self._data_key)
        next(self.store.reencrypt_persons(person_keys, batch_size), None)
        person_keys.clear()
        persons = self.store.person_key_versions()
        kept = self.store.reencrypt_kept(ciphers.get, current, batch_size)  # kept crops and shadow vectors
        steps = self.store.reencrypt(ciphers.get, current, batch_size, audit=AuditRecord(principal, "key.reencrypt"))
        next(steps, None)
        self._checkpoint_audit()
        versions = self.store.key_versions_in_use()
        remaining = kept + sum(n for version, n in [*versions.items(), *persons.items()] if version != current.key_version)
        if remaining == 0:
            next(steps, None)  # lets the store finish: it truncates the WAL that held the old records
        ciphers.clear()
        return {"version": current.key_version, "remaining": remaining,
                "total": sum(versions.values()) + sum(persons.values())}

    # ---- model migration (tenancy/migration.py) -------------------------------------------------------------
    def migration_state(self, model: str) -> dict:
        """Faces, kept crops and shadow vectors for `model` (nothing decrypted); `bound`: the file's model."""
        self._require_primary("migration_state")
        self._touch()
        _, missing, no_crop = self.store.shadow_missing(model, 0)
        return {**self.store.crop_counts(), "shadow": self.store.shadow_count(model), "missing": missing,
                "missing_without_crop": no_crop, "rejections": self.store.rejection_count(), "bound": self.store.model}

    def migration_embed(self, model: str, dim: int, limit: int, embedder) -> dict:
        """The next `limit` faces lacking a shadow vector for `model`: their kept crops decrypted here, embedded by
        `embedder` (the target pack's Embedder handle) in messages Ray inlines, and sealed into the shadow table
        (durable), so no decrypted crop or vector goes through the object store (tenancy/reembed.py). Counts only."""
        self._require_primary("migration_embed")
        self._touch()
        if embedder.deployment_id not in self._embedders:
            self._embedders[embedder.deployment_id] = blocking_handle(embedder)
        ciphers = CipherCache(self._data_key)
        try:
            return reembed.next_batch(self.store, ciphers, model, dim, limit, self._embedders[embedder.deployment_id])
        finally:
            ciphers.clear()  # key material is not kept beyond the batch

    def migration_switch(self, model: str, dim: int, *, principal: str = "migration") -> int | None:
        """The switch, atomically in the file (faces take their shadow vectors, the binding changes), then this
        actor adopts the new model and reloads its index from the file. None: some face still lacks a shadow
        vector (enrolled since the last batch); nothing changed, the caller catches up and tries again."""
        self._require_primary("migration_switch")
        self._touch()
        switched = self.store.switch_model(model, dim, audit=AuditRecord(principal, "model.switch"))
        if switched is None:
            return None
        self._checkpoint_audit()
        self.model, self.dim = model, dim
        self.index = None
        self.activate()  # the index reloads: the new model's vectors, decrypted from the file
        return switched

    def migration_abandon(self) -> None:
        """A migration started again towards another target: the old shadow goes."""
        self._require_primary("migration_abandon")
        self._touch()
        self.store.clear_shadow()

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
        self._require_primary("tenant_info")
        return self.reads.info(self.info())

    def pid(self) -> int:
        return os.getpid()

    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_used

    def close(self) -> None:
        if metrics.exported():
            metrics.index_memory_bytes().set(0, tags={"tenant": self.tenant_id, "shard": str(self.shard)})
        if self.store is not None:
            self._checkpoint_audit(force=True)  # at shutdown: the head as it stands is MACed
            self.store.close()
        self.store = self.index = None  # the decrypted vectors go with them
        self._shard_handles.clear()


def _reconstructed() -> bool:
    """True inside an actor that Ray restarted after a crash."""
    if not ray.is_initialized():
        return False
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not inside an actor
        return False


def placement() -> dict:
    """Where this process runs in the cluster (for operators and placement tests)."""
    if not ray.is_initialized():
        return {"pid": os.getpid()}
    context = ray.get_runtime_context()
    return {"pid": os.getpid(), "node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def blocking_handle(handle):
    """A deployment handle this synchronous actor can call with `.result()`. Serve's throughput-optimised mode
    (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, which `securegate serve` sets) runs a handle's router on the caller's
    event loop, and a sync actor has none: its handles get their own loop, as Serve's default does."""
    if not handle.is_initialized:
        handle._init(_run_router_in_separate_loop=True)
    return handle


class KeyServiceDataKeys:
    """`data_key(version, purpose)` for one tenant through the KeyService deployment's handle (picklable)."""

    def __init__(self, keys, tenant_id: str) -> None:
        self.keys, self.tenant_id = keys, tenant_id

    def __call__(self, version: int | None, purpose: str = "embeddings") -> DataKey:
        return blocking_handle(self.keys).data_key.remote(self.tenant_id, purpose, version).result()



class KeyServiceAuditMac:
    """The provider's MAC over a tenant's audit checkpoints, through the KeyService handle (picklable)."""

    def __init__(self, keys, tenant_id: str) -> None:
        self.keys, self.tenant_id = keys, tenant_id

    def __call__(self, message: bytes) -> bytes:
        return blocking_handle(self.keys).mac.remote(message, audit_log.TENANT_PURPOSE, self.tenant_id).result()


# Restarted by Ray after a crash (activation re-reads the file). Calls in flight when it died fail to
# their callers, who never got an acknowledgement; nothing is retried behind their back.
TenantShardActor = ray.remote(max_restarts=-1, max_task_retries=0)(TenantShard)
