"""One Ray actor per active tenant: the tenant's store on disk and its decrypted index in memory.

Activation (on first use, and again after a crash) decrypts the tenant's faces into memory and builds the index; the
data keys it used are dropped right after. Writes go to the file first (durable when they return), then
to memory, so a crash between the two heals at the next activation. The actor is sync: Ray runs its
methods one at a time, which is what keeps the file and the index in step without locks.
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
from tenancy.index import FaceIndex
from tenancy.store import NotFound, TenantStore

log = logging.getLogger(__name__)

NAMESPACE = "securegate"


class _Metrics:
    """Search latency by tier and index memory, exported through Ray (only inside a Ray worker)."""

    def __init__(self) -> None:
        from ray.util.metrics import Gauge, Histogram

        self.search_seconds = Histogram(
            "securegate_search_seconds", description="index search latency by tier",
            boundaries=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], tag_keys=("tier",))
        self.index_bytes = Gauge("securegate_index_memory_bytes", description="memory held by a tenant's index",
                                 tag_keys=("tenant",))


def _metrics() -> _Metrics | None:
    global _METRICS
    if _METRICS is None and ray.is_initialized():
        _METRICS = _Metrics()
    return _METRICS


_METRICS: _Metrics | None = None


class KeySource(Protocol):
    """Where data keys come from: the KeyService deployment's handle (or anything shaped like it)."""

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> DataKey: ...


def actor_name(tenant_id: str) -> str:
    return f"tenant-index:{tenant_id}"


def tenant_db_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "embeddings.db"


class TenantIndex:
    """The logic of an index actor, usable without Ray (tests, tools)."""

    def __init__(self, tenant_id: str, data_dir: str, model: str, dim: int,
                 data_key: Callable[[int | None], DataKey], index_options: dict[str, Any] | None = None) -> None:
        self.tenant_id, self.model, self.dim = tenant_id, model, dim
        self._path = tenant_db_path(data_dir, tenant_id)
        self._data_key = data_key
        self._index_options = dict(index_options or {})
        self.store: TenantStore | None = None
        self.index: FaceIndex | None = None
        self.activation_s = 0.0
        self.last_used = time.monotonic()

    def activate(self) -> None:
        """Decrypt the tenant's faces into memory and build the index. Runs on first use, including after
        Ray restarts a crashed actor; a record that fails authentication fails activation (fail closed)."""
        if self.index is not None:
            return
        started = time.perf_counter()
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        store = TenantStore.open(self._path, self.tenant_id, self.model, self.dim)
        ciphers: dict[int, RecordCipher] = {}

        def cipher_for(version: int) -> RecordCipher:
            if version not in ciphers:
                ciphers[version] = self._data_key(version).cipher()
            return ciphers[version]

        try:
            loaded = store.load_all(cipher_for)
        except BaseException:
            store.close()
            raise
        finally:
            ciphers.clear()  # key material is not kept beyond activation
        self.index = FaceIndex.build(loaded.face_ids, loaded.person_ids, loaded.vectors.reshape(-1, self.dim), **self._index_options)
        self.store = store
        self.external_ids: dict[str, str | None] = {}
        cursor = None
        while True:
            persons, cursor = store.list_persons(1000, cursor)
            self.external_ids.update((p.person_id, p.external_id) for p in persons)
            if cursor is None:
                break
        self.activation_s = time.perf_counter() - started
        self._report_memory()
        log.info("tenant %s active: %d faces in %.2fs", self.tenant_id, len(self.index), self.activation_s)

    def _touch(self) -> None:
        self.activate()
        self.last_used = time.monotonic()

    def _report_memory(self) -> None:
        if (m := _metrics()) is not None and self.index is not None:
            m.index_bytes.set(self.index.memory_bytes(), tags={"tenant": self.tenant_id})

    # ---- persons ------------------------------------------------------------------------------------------
    def create_person(self, external_id: str | None, metadata: dict) -> dict:
        self._touch()
        person = self.store.create_person(external_id, metadata)
        self.external_ids[person.person_id] = person.external_id
        return {"person_id": person.person_id}

    def get_person(self, person_id: str) -> dict:
        self._touch()
        person = self.store.get_person(person_id)
        if person is None:
            raise NotFound(f"person {person_id} not found")
        faces = self.store.faces_of(person_id)
        return {"person_id": person.person_id, "external_id": person.external_id, "metadata": person.metadata,
                "created_at": person.created_at,
                "faces": [{"face_id": f.face_id, "created_at": f.created_at, "quality": f.quality} for f in faces]}

    def list_persons(self, limit: int, cursor: str | None) -> dict:
        self._touch()
        persons, next_cursor = self.store.list_persons(limit, cursor)
        return {"persons": [{"person_id": p.person_id, "external_id": p.external_id, "metadata": p.metadata,
                             "created_at": p.created_at} for p in persons],
                "next_cursor": next_cursor}

    def delete_person(self, person_id: str) -> None:
        self._touch()
        face_ids = self.store.delete_person(person_id)
        self.index.remove(face_ids)
        self.external_ids.pop(person_id, None)

    # ---- faces --------------------------------------------------------------------------------------------
    def add_face(self, person_id: str, embedding: np.ndarray, det_score: float, quality: float) -> dict:
        self._touch()
        vector = np.asarray(embedding, np.float32).reshape(1, -1)
        if vector.shape[1] != self.dim:
            raise ValueError(f"embedding has {vector.shape[1]} dims, tenant model has {self.dim}")
        cipher = self._data_key(None).cipher()
        record = self.store.add_face(person_id, vector[0], cipher, det_score, quality)
        del cipher
        self.index.add([record.face_id], [person_id], vector)
        self._report_memory()
        return {"face_id": record.face_id, "quality": record.quality}

    def delete_face(self, person_id: str, face_id: str) -> None:
        self._touch()
        self.store.delete_face(person_id, face_id)
        self.index.remove([face_id])

    def expire_faces(self, cutoff: float) -> list[str]:
        """Retention: delete every face created before `cutoff`, exactly as a manual deletion would."""
        self._touch()
        expired = self.store.faces_created_before(cutoff)
        for face in expired:
            self.store.delete_face(face.person_id, face.face_id)
        self.index.remove([f.face_id for f in expired])
        self._report_memory()
        return [f.face_id for f in expired]

    # ---- search -------------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, top_k: int, threshold: float, match_on: str = "faces") -> list[list[dict]]:
        """Every face of an image in one call; per face, up to top_k persons at or above threshold."""
        self._touch()
        queries = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        started = time.perf_counter()
        if match_on == "centroid":
            results = [[self._match(person_id, None, similarity) for person_id, similarity in per_face]
                       for per_face in self.index.search_centroids(queries, top_k, threshold)]
        else:
            results = [[self._match(m.person_id, m.face_id, m.similarity) for m in per_face]
                       for per_face in self.index.search(queries, top_k, threshold)]
        if (m := _metrics()) is not None:
            m.search_seconds.observe(time.perf_counter() - started, tags={"tier": "centroid" if match_on == "centroid" else self.index.tier})
        return results

    def verify_person(self, vector: np.ndarray, person_id: str) -> dict:
        """Similarity of a probe to one person: best over their faces, and to their centroid."""
        self._touch()
        if self.store.get_person(person_id) is None:
            raise NotFound(f"person {person_id} not found")
        probe = np.asarray(vector, np.float32).reshape(-1)
        centroid = self.index.centroid(person_id)
        faces = self.index.person_vectors(person_id)
        return {
            "faces": int(len(faces)),
            "best_face_similarity": float(np.max(faces @ probe)) if len(faces) else None,
            "centroid_similarity": float(centroid @ probe) if centroid is not None else None,
        }

    def _match(self, person_id: str, face_id: str | None, similarity: float) -> dict:
        return {"person_id": person_id, "external_id": self.external_ids.get(person_id),
                "face_id": face_id, "similarity": round(float(similarity), 6)}

    # ---- key rotation ---------------------------------------------------------------------------------
    def reencrypt_step(self, batch_size: int = 500) -> dict:
        """One batch of a content-key rotation: re-seal up to `batch_size` records under the current key
        version. The router calls this repeatedly, so searches and enrolments run between batches."""
        self._touch()
        current = self._data_key(None)
        ciphers = {current.version: current.cipher()}

        def cipher_for(version: int) -> RecordCipher:
            if version not in ciphers:
                ciphers[version] = self._data_key(version).cipher()
            return ciphers[version]

        steps = self.store.reencrypt(cipher_for, ciphers[current.version], batch_size)
        next(steps, None)
        versions = self.store.key_versions_in_use()
        remaining = sum(n for version, n in versions.items() if version != current.version)
        if remaining == 0:
            next(steps, None)  # lets the store finish: it truncates the WAL that held the old records
        ciphers.clear()
        return {"version": current.version, "remaining": remaining, "total": sum(versions.values())}

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def info(self) -> dict:
        self.activate()
        return {"tenant_id": self.tenant_id, "faces": len(self.index), "persons": len(self.external_ids),
                "memory_bytes": self.index.memory_bytes(), "activation_s": round(self.activation_s, 4),
                "idle_s": round(time.monotonic() - self.last_used, 3), "key_versions": self.store.key_versions_in_use(),
                "tier": self.index.tier, "placement": placement()}

    def pid(self) -> int:
        return os.getpid()

    def idle_seconds(self) -> float:
        return time.monotonic() - self.last_used

    def close(self) -> None:
        if (m := _metrics()) is not None:
            m.index_bytes.set(0, tags={"tenant": self.tenant_id})
        if self.store is not None:
            self.store.close()
        self.store = self.index = None  # the decrypted vectors go with them


def placement() -> dict:
    """Where this process runs in the cluster (for operators and placement tests)."""
    if not ray.is_initialized():
        return {"pid": os.getpid()}
    context = ray.get_runtime_context()
    return {"pid": os.getpid(), "node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


class KeyServiceDataKeys:
    """`data_key(version)` for one tenant through the KeyService deployment's handle (picklable)."""

    def __init__(self, keys, tenant_id: str) -> None:
        self.keys, self.tenant_id = keys, tenant_id

    def __call__(self, version: int | None) -> DataKey:
        return self.keys.data_key.remote(self.tenant_id, "embeddings", version).result()



# Restarted by Ray after a crash (activation re-reads the file). Calls in flight when it died fail to
# their callers, who never got an acknowledgement; nothing is retried behind their back.
TenantIndexActor = ray.remote(max_restarts=-1, max_task_retries=0)(TenantIndex)
