"""Scores every tier shares: unit vectors, canonical cosine scores (identical whatever the layout of the rows),
the bound on BLAS's error against them, the total order of ties, and the best row per person."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Match:
    face_id: str
    person_id: str
    similarity: float


def normalised(vectors: np.ndarray, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows scaled to unit length (written into `out` when given, saving a copy of the whole gallery)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ValueError(f"expected vectors of shape [n, {dim}], got {vectors.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))[:, None]  # no [n, dim] temporary
    if not np.all(norms > 0) or not np.all(np.isfinite(norms)):
        raise ValueError("vectors must be finite and non-zero")
    return np.divide(vectors, norms, out=out)


def exact_scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Canonical cosine scores of `rows` [c, d] against `query` [d], as float32.

    BLAS (sgemv/sgemm) rounds a row's dot product differently depending on the shape of the matrix it sits in
    (blocking, thread split, tail kernels), so the same face scored inside a 2M-row index and inside a 500K-row
    shard can differ in the last bit. The final scores of a search come from here instead: float32 x float32
    products are exact in float64, and they are summed by a fixed pairwise tree of elementwise adds (each add is
    one IEEE operation whatever the SIMD width), so the result depends only on the two vectors. That is what
    makes a sharded search return bit-identical similarities (and the same tie-breaks) as an unsharded one.
    """
    rows = np.asarray(rows, dtype=np.float32)
    if rows.shape[0] == 0:
        return np.empty(0, dtype=np.float32)
    products = rows.astype(np.float64) * np.asarray(query, dtype=np.float64)[None, :]
    width = 1 << max(0, (products.shape[1] - 1).bit_length())
    if width != products.shape[1]:
        products = np.pad(products, ((0, 0), (0, width - products.shape[1])))
    while width > 1:
        width //= 2
        products = products[:, :width] + products[:, width : 2 * width]
    return products[:, 0].astype(np.float32)


def score_slack(dim: int) -> float:
    """A bound on |BLAS float32 score - exact_scores| for unit vectors: gamma_d * sum|a_i q_i| <= d * 2^-24
    (any summation order), with a safety factor, plus the final float32 rounding of the canonical score."""
    return 1.1 * max(dim, 1) * 2.0 ** -24 + 2.0 ** -22


def rank_order(similarities: np.ndarray, face_ids: Sequence[str]) -> np.ndarray:
    """Positions sorted by (similarity descending, face id ascending): a total order that does not depend on
    where a face sits in an index, so every layout breaks ties the same way."""
    if len(similarities) == 0:
        return np.empty(0, dtype=np.int64)
    return np.lexsort((np.asarray(face_ids, dtype=str), -np.asarray(similarities, dtype=np.float64)))


def best_per_person(order: np.ndarray, person_codes: np.ndarray, top_k: int) -> np.ndarray:
    """From rows sorted by descending score, keep the first (best) row of each person, top_k of them."""
    _, first = np.unique(person_codes[order], return_index=True)
    return order[np.sort(first)][:top_k]
