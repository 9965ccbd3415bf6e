"""Embedder deployment: aligned crops → L2-normalised ArcFace vectors, micro-batched across requests.

A request carries the crops of one image (1..n). `@serve.batch` counts crops, not requests
(`batch_size_fn`), so a batch never exceeds `max_batch_size` crops; a request with more crops than that is
split. Inference runs off the event loop so the next batch fills while this one computes. A request that
finds the replica idle (nothing queued or computing) runs at once: waiting out the batch window for
company that is not coming only adds latency (benchmarks/pipeline.py, concurrency 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import numpy as np
import ray
from ray import serve

from securegate import metrics
from vision.embedder import FaceEmbedder
from vision.packs import resolve_pack
from vision.runtime import onnx_providers
from securegate.settings import DEFAULT_PACK, Settings

log = logging.getLogger("ray.serve")

# max_ongoing_requests must be >= max_batch_size or batches can never fill; the configs set both.
# No access log: callers are the Ingress and Python callers, one line per crop costs CPU the batches need
# (benchmarks/embed.py) and the Ingress already logs every client request.
@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5},
                  logging_config={"enable_access_log": False})
class Embedder:
    def __init__(self, settings: dict, pack: str = DEFAULT_PACK) -> None:
        """`pack`: which of the served packs this deployment runs (settings `models` = "default", or a name
        of settings `packs`; graph.py binds one Embedder deployment per pack)."""
        self.settings = Settings.model_validate(settings)
        self.pack_name = pack
        self.pack = resolve_pack(self.settings.pack_source(pack))
        self.model = FaceEmbedder(self.pack, onnx_providers(use_gpu=bool(ray.get_gpu_ids())), threads=self.settings.embedder.threads)
        self._max_batch = self.settings.embedder.max_batch_size
        self._apply_batching(self.settings.embedder.max_batch_size, self.settings.embedder.batch_wait_timeout_s)
        self.batch_sizes: Counter[int] = Counter()
        self._in_flight = 0  # requests inside embed(): queued for a batch or computing
        log.info("Embedder ready: %s dim=%d %s on %s", self.pack.recognizer_name, self.model.dim, self.model.strategy, self.model.providers)

    def reconfigure(self, user_config: dict) -> None:
        """Batching policy changes live (Serve `user_config`)."""
        self._apply_batching(
            int(user_config.get("max_batch_size", self._max_batch)),
            float(user_config.get("batch_wait_timeout_s", self._wait)),
        )

    def _apply_batching(self, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        self._max_batch = max_batch_size
        self._wait = batch_wait_timeout_s
        self._embed_batch.set_max_batch_size(max_batch_size)
        self._embed_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def embed(self, crops: np.ndarray) -> np.ndarray:
        """[n, S, S, 3] uint8 BGR crops → [n, dim] float32, rows of unit length."""
        return np.ascontiguousarray((await self._embed_rows(crops))[:, :-1])

    async def embed_with_norms(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`embed`, and each raw vector's length (cameras weight faces by it: vision/quality.py)."""
        rows = await self._embed_rows(crops)
        return np.ascontiguousarray(rows[:, :-1]), rows[:, -1].copy()

    async def _embed_rows(self, crops: np.ndarray) -> np.ndarray:
        """[n, dim + 1]: each unit vector with its raw length in the last column (one array through the batcher)."""
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, self.model.dim + 1), np.float32)
        idle = self._in_flight == 0
        self._in_flight += 1
        try:
            if idle and len(crops) <= self._max_batch:
                return await self._run(crops)
            chunks = [crops[i : i + self._max_batch] for i in range(0, len(crops), self._max_batch)]
            parts = await asyncio.gather(*(self._embed_batch(chunk) for chunk in chunks))
            return np.concatenate(parts)
        finally:
            self._in_flight -= 1

    async def _run(self, crops: np.ndarray) -> np.ndarray:
        self.batch_sizes[len(crops)] += 1
        metrics.embed_batch_size().observe(len(crops))
        vectors, norms = await asyncio.to_thread(self.model.embed_with_norms, crops)
        return np.hstack([vectors, norms[:, None]])

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.05, batch_size_fn=lambda items: sum(len(c) for c in items))
    async def _embed_batch(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(c) for c in requests]
        rows = await self._run(np.concatenate(requests))
        return np.split(rows, np.cumsum(sizes)[:-1])

    def batch_stats(self) -> dict:
        """Histogram of formed batch sizes (in crops) since start or the last reset."""
        return {"histogram": dict(sorted(self.batch_sizes.items())), "max_batch_size": self._max_batch, "batch_wait_timeout_s": self._wait}

    def reset_batch_stats(self) -> None:
        self.batch_sizes.clear()

    def info(self) -> dict:
        return {**self.pack.describe(), "served_as": self.pack_name, "providers": self.model.providers, "strategy": self.model.strategy, "gpu_ids": ray.get_gpu_ids()}
