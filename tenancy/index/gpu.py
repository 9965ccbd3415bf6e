"""The GPU tier's device index and the limit of its k-selection."""

from __future__ import annotations

import faiss

# FAISS GPU selects at most this many neighbours per query (GPU_MAX_SELECTION_K); it refuses a larger k.
GPU_MAX_K = 2048
GPU_MIN_CANDIDATES = 64


def gpu_flat_index(dim: int):
    """Exact inner-product index on every visible GPU (needs a faiss build with GPU support)."""
    return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
