"""A sharded tenant's answers merged exactly: per query, the global top_k persons from each shard's own top_k."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tenancy.index.scoring import Match


def merge_matches(partials: Iterable[Sequence[Match]], top_k: int) -> list[Match]:
    """Merge the per-shard answers of one query into the global top_k persons.

    Per person keep the best face (highest similarity; ties to the smaller face id), rank persons by
    (similarity desc, face id asc), cut at top_k. Exact, given that each shard returned its own top_k persons
    (best face each, >= threshold) under the same order: let P be in the global top_k with best face f held
    by shard S. Every person ranked above P *within S* has a face in S beating f, hence a global best face
    beating f, hence is ranked above P globally; so P's rank in S is <= its global rank <= top_k, and S
    returned P with face f. Persons outside the global top_k can be returned by some shard but are cut,
    since the top_k persons above them are all present with their true best faces.
    """
    best: dict[str, Match] = {}
    for matches in partials:
        for m in matches:
            held = best.get(m.person_id)
            if held is None or m.similarity > held.similarity or (
                    m.similarity == held.similarity and m.face_id < held.face_id):
                best[m.person_id] = m
    ranked = sorted(best.values(), key=lambda m: (-m.similarity, m.face_id))
    return ranked[:top_k]


def merge_search(per_shard: Sequence[Sequence[Sequence[Match]]], top_k: int) -> list[list[Match]]:
    """`merge_matches` for a batch: per_shard[s][q] is shard s's answer to query q."""
    if not per_shard:
        return []
    return [merge_matches([shard[q] for shard in per_shard], top_k) for q in range(len(per_shard[0]))]
