"""The ANN tier: FAISS PQ fast-scan codes over the index's rows, scanned for candidates that FaceIndex re-ranks
exactly (why this index and these parameters: the package's docstring)."""

from __future__ import annotations

import faiss
import numpy as np

ANN_MIN_CANDIDATES = 64
ANN_MAX_CANDIDATES = 4096
# Rebuild the ANN tier once this fraction of its codes are tombstones.
ANN_TOMBSTONE_REBUILD_FRACTION = 0.2
# Drop the ANN tier only well below ann_min_faces so a tenant hovering at the limit doesn't thrash.
ANN_DROP_FRACTION = 0.8
ANN_TRAIN_SAMPLE = 65_536


def pq_subquantizers(dim: int) -> int:
    """4-bit sub-quantisers, one per 4 dims (d/8 bytes a face). One per 8 dims at 512-d lost 15 % of the
    exact top-1 answers for genuine probes at cosine 0.35-0.5 on a calibrated gallery (benchmarks/search_tiers.py);
    one per 4 lost none, at 0.45 instead of 0.26 ms per probe at 100K (exact: 6.5 ms)."""
    target = dim // 4
    for m in range(max(target, 1), 0, -1):
        if dim % m == 0 and m % 2 == 0:
            return m
    return 1


class AnnTier:
    """PQ fast-scan codes over the index's rows; labels are insertion order, mapped to rows."""

    def __init__(self, dim: int, training: np.ndarray) -> None:
        self.index = faiss.IndexPQFastScan(dim, pq_subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT)
        self.index.train(training)
        self.row_of_label = np.empty(0, dtype=np.int64)  # -1 = tombstone
        self.tombstones = 0

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Appends codes; returns the labels given to `rows`."""
        first = self.index.ntotal
        self.index.add(vectors)
        self.row_of_label = np.concatenate([self.row_of_label, rows.astype(np.int64)])
        return np.arange(first, first + len(rows), dtype=np.int64)

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Rows of the ~k best candidates per query ([q, k], -1 for tombstones/padding)."""
        _, labels = self.index.search(queries, min(k, self.index.ntotal))
        rows = np.where(labels >= 0, self.row_of_label[np.maximum(labels, 0)], -1)
        return rows

    def memory_bytes(self) -> int:
        return self.index.ntotal * self.index.code_size + self.row_of_label.nbytes
