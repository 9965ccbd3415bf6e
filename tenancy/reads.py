"""A tenant's audited reads, answered by its primary shard actor in one call: search and verify over every shard,
with the read's audit entry appended before the answer leaves.

Sharded and unsharded tenants take the same path: the TenantSupervisor calls the primary, and the primary asks the other
shards for their part (submitted first, so they work while it computes its own) and merges exactly
(`tenancy.index.merge_search`). The primary reconciles the shards at its own (re)activation, before it serves,
so every part it gathers is of the reconciled file. Searches with `match_on: centroid` are refused on sharded
tenants: an exact merged centroid needs every person's partial sums from every shard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from securegate import errors
from tenancy.index import merge_search
from tenancy.operations import Match


class ShardedCentroidSearch(ValueError):
    """A `match_on: centroid` search on a tenant with shards > 1: refused (a client error, HTTP 400)."""

    api_error = errors.InvalidRequest


class LocalShard(Protocol):
    """The primary's own shard (tenancy.actors.TenantShard)."""

    def search_partial(self, vectors: np.ndarray, top_k: int, threshold: float) -> dict: ...

    def search_centroids(self, vectors: np.ndarray, top_k: int, threshold: float) -> list[list[Match]]: ...

    def verify_partial(self, vector: np.ndarray, person_id: str) -> dict: ...

    def verify_local(self, vector: np.ndarray, person_id: str) -> dict: ...


def search_counts(results: list[list[Match]]) -> dict:
    """The audit's counts of a search: never the result itself."""
    return {"faces": len(results), "matches": sum(len(m) for m in results)}


class TenantReads:
    """`local`: the primary's shard; `peer(k)`: shard k's actor handle; `record_audit(principal, action, outcome,
    counts)`: the primary's durable audit append (one commit); `gather(refs, handles, shards, what)`: the results
    of calls on other shards' actors, bounded while one of them waits for a node (tenancy.placement.ShardWatch)."""

    def __init__(self, local: LocalShard, peer: Callable[[int], Any], shards: int,
                 record_audit: Callable[[str, str, str, dict | None], None],
                 gather: Callable[[list, list, list[int], str], list]) -> None:
        self.local, self.peer, self.shards, self.record_audit = local, peer, shards, record_audit
        self.gather = gather

    def _from_peers(self, what: str, call: Callable[[Any], Any]) -> Callable[[], list]:
        """Submit `call(peer handle)` to every other shard now (they work while the primary computes its own part);
        returns the wait for their results."""
        ks = list(range(1, self.shards))
        handles = [self.peer(k) for k in ks]
        refs = [call(h) for h in handles]
        return lambda: self.gather(refs, handles, ks, what)

    def _audited(self, principal: str, action: str, read: Callable[[], Any], counts: Callable[[Any], dict]) -> Any:
        try:
            result = read()
        except Exception as exc:
            outcome = getattr(exc, "code", None) or type(getattr(exc, "cause", None) or exc).__name__
            self.record_audit(principal, action, outcome, None)
            raise
        self.record_audit(principal, action, "ok", counts(result))
        return result

    # ---- search -------------------------------------------------------------------------------------------
    def search(self, vectors: np.ndarray, top_k: int, threshold: float, match_on: str, principal: str) -> list[list[Match]]:
        return self._audited(principal, "search", lambda: self._search(vectors, top_k, threshold, match_on), search_counts)

    def _search(self, vectors: np.ndarray, top_k: int, threshold: float, match_on: str) -> list[list[Match]]:
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        if match_on == "centroid":
            if self.shards > 1:
                raise ShardedCentroidSearch("match_on 'centroid' is not available on a sharded tenant (shards > 1)")
            return self.local.search_centroids(vectors, top_k, threshold)
        others = self._from_peers("search", lambda h: h.search_partial.remote(vectors, top_k, threshold))
        partials = [self.local.search_partial(vectors, top_k, threshold), *others()]
        external_ids: dict[str, str | None] = {}
        for partial in partials:
            external_ids.update(partial["external_ids"])
        merged = merge_search([p["matches"] for p in partials], top_k) if len(partials) > 1 else partials[0]["matches"]
        return [[Match(m.person_id, external_ids.get(m.person_id), m.face_id, round(float(m.similarity), 6)) for m in per_face]
                for per_face in merged]

    # ---- verify ---------------------------------------------------------------------------------------------
    def verify(self, vector: np.ndarray, person_id: str, principal: str) -> dict:
        """{faces, best_face_similarity, centroid_similarity, best_rejection_similarity} of the probe and person."""
        return self._audited(principal, "verify", lambda: self._verify(vector, person_id), lambda _: {"faces": 1})

    def _verify(self, vector: np.ndarray, person_id: str) -> dict:
        probe = np.asarray(vector, np.float32).reshape(-1)
        if self.shards == 1:
            return self.local.verify_local(probe, person_id)
        others = self._from_peers("verify", lambda h: h.verify_partial.remote(probe, person_id))
        partials = [self.local.verify_partial(probe, person_id), *others()]
        bests = [p["best_face_similarity"] for p in partials if p["best_face_similarity"] is not None]
        sums = [p["sum"] for p in partials if p["sum"] is not None]
        centroid_similarity = None
        if sums:
            total = np.sum(sums, axis=0)
            norm = np.linalg.norm(total)
            if norm > 0:
                centroid_similarity = float((total / norm).astype(np.float32) @ probe)
        return {"faces": sum(p["faces"] for p in partials), "best_face_similarity": max(bests) if bests else None,
                "centroid_similarity": centroid_similarity,
                # every shard holds all rejections: the primary's answer is the tenant's
                "best_rejection_similarity": partials[0]["best_rejection_similarity"]}

    # ---- info ------------------------------------------------------------------------------------------------
    def info(self, own: dict) -> dict:
        """The tenant's info: the primary's `own`, with faces, memory and timings summed over every shard."""
        if self.shards == 1:
            return own
        others = self._from_peers("info", lambda h: h.info.remote())
        infos = [own, *others()]
        merged = dict(own)
        merged.update(faces=sum(i["faces"] for i in infos), memory_bytes=sum(i["memory_bytes"] for i in infos),
                      activation_s=max(i["activation_s"] for i in infos), idle_s=min(i["idle_s"] for i in infos),
                      shards=self.shards, shard_info=infos)
        return merged
