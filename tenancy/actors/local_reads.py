"""This shard's own part of a tenant's reads (tenancy/reads.py gathers and merges them, and audits the read):
top persons per query, persons by centroid, a person's verification."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from securegate import metrics
from tenancy.operations import Match
from tenancy.store import NotFound

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard


class LocalReads:
    """Reads of `shard`'s index (and, for a person's existence, the primary's store)."""

    def __init__(self, shard: TenantShard) -> None:
        self.shard = shard

    def search_centroids(self, queries: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]:
        shard = self.shard
        started = time.perf_counter()
        results = [[Match(person_id, shard.external_ids.get(person_id), None, round(float(similarity), 6))
                    for person_id, similarity in per_face]
                   for per_face in shard.index.search_centroids(queries, top_k, threshold)]
        if metrics.exported():
            metrics.search_seconds().observe(time.perf_counter() - started, tags={"tier": "centroid"})
        return results

    def search_partial(self, vectors: np.ndarray, top_k: int, threshold: float) -> dict:
        shard = self.shard
        queries = np.asarray(vectors, np.float32).reshape(-1, shard.dim)
        started = time.perf_counter()
        matches = shard.index.search(queries, top_k, threshold)
        if metrics.exported():
            metrics.search_seconds().observe(time.perf_counter() - started, tags={"tier": shard.index.tier})
        persons = {match.person_id for per_face in matches for match in per_face}
        return {"matches": matches, "external_ids": {p: shard.external_ids.get(p) for p in persons}}

    def verify_local(self, probe: np.ndarray, person_id: str) -> dict:
        shard = self.shard
        if not shard.store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        centroid = shard.index.centroid(person_id)
        faces = shard.index.person_vectors(person_id)
        return {
            "faces": int(len(faces)),
            "best_face_similarity": float(np.max(faces @ probe)) if len(faces) else None,
            "centroid_similarity": float(centroid @ probe) if centroid is not None else None,
            "best_rejection_similarity": shard.index.rejection_similarity(person_id, probe),
        }

    def verify_partial(self, vector: np.ndarray, person_id: str) -> dict:
        shard = self.shard
        if shard.primary and not shard.store.has_person(person_id):
            raise NotFound(f"person {person_id} not found")
        probe = np.asarray(vector, np.float32).reshape(-1)
        faces = shard.index.person_vectors(person_id)
        return {"faces": int(len(faces)),
                "best_face_similarity": float(np.max(faces @ probe)) if len(faces) else None,
                "sum": faces.sum(axis=0, dtype=np.float64) if len(faces) else None,
                # every shard holds all rejections: the caller takes the primary's
                "best_rejection_similarity": shard.index.rejection_similarity(person_id, probe)}
