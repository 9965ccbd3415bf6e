"""ArcFace through insightface: aligned crops -> L2-normalised embeddings (dimension read from the model)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from vision.packs import ModelPack
from vision.runtime import session_options

log = logging.getLogger(__name__)


class FaceEmbedder:
    """ArcFace through insightface: aligned crops → L2-normalised embeddings (dim read from the model).

    A recognizer whose batch dimension is fixed at 1 (common in the wild) is run per item, or through a
    copy of the graph with a dynamic batch dimension when that is measured to be faster and gives the
    same vectors: `strategy` says which was kept.
    """

    def __init__(
        self,
        pack: ModelPack,
        providers: list[str],
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        from insightface.model_zoo import get_model

        self.pack = pack
        self._providers = providers
        self._threads = threads
        self._model = get_model(str(pack.recognizer_path), providers=providers, sess_options=session_options(threads))
        self.providers = list(self._model.session.get_providers())
        self.strategy = "batched"
        if pack.recognizer_fixed_batch == 1:
            self.strategy = self._choose_fixed_batch_strategy(cache_dir)
        log.info("recognizer %s: dim %d, %s, providers %s", pack.recognizer_name, self.dim, self.strategy, self.providers)

    @property
    def dim(self) -> int:
        return self.pack.embedding_dim

    def embed(self, crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
        return self.embed_with_norms(crops)[0]

    def embed_with_norms(self, crops: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors and the raw vectors' lengths (a quality signal: vision/quality.py)."""
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        if self.strategy == "per_item":
            raw = np.concatenate([self._model.get_feat([c]) for c in crops])
        else:
            raw = self._model.get_feat(crops)
        raw = raw.astype(np.float32, copy=False)
        norms = np.linalg.norm(raw, axis=1)
        return raw / np.maximum(norms[:, None], 1e-12), norms

    # -- fixed batch-1 models -------------------------------------------------------------------------
    def _choose_fixed_batch_strategy(self, cache_dir) -> str:
        """Measure per-item runs against a dynamic-batch copy of the graph; keep the faster if equal."""
        from insightface.model_zoo import get_model

        try:
            dynamic_path = _dynamic_batch_copy(self.pack.recognizer_path, cache_dir)
            dynamic = get_model(str(dynamic_path), providers=self._providers, sess_options=session_options(self._threads))
        except Exception as exc:
            log.info("recognizer %s: no dynamic-batch copy (%s); running per item", self.pack.recognizer_name, exc)
            return "per_item"
        rng = np.random.default_rng(0)
        size = self.pack.recognizer_input_size
        sample = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(16)]
        per_item = np.concatenate([self._model.get_feat([c]) for c in sample])
        try:
            batched = dynamic.get_feat(sample)
        except Exception as exc:
            log.info("recognizer %s: dynamic copy fails at batch>1 (%s); running per item", self.pack.recognizer_name, exc)
            return "per_item"
        if batched.shape != per_item.shape or not np.allclose(per_item, batched, atol=1e-4):
            log.info("recognizer %s: dynamic copy disagrees with per-item runs; running per item", self.pack.recognizer_name)
            return "per_item"

        def best_of(fn, reps=3):
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        t_item = best_of(lambda: [self._model.get_feat([c]) for c in sample])
        t_batch = best_of(lambda: dynamic.get_feat(sample))
        log.info("recognizer %s fixed at batch 1: per-item %.1f ms vs dynamic %.1f ms for %d crops",
                 self.pack.recognizer_name, t_item * 1e3, t_batch * 1e3, len(sample))
        self.fixed_batch_timings = {"per_item_s": t_item, "dynamic_s": t_batch, "crops": len(sample)}
        if t_batch < t_item:
            self._model = dynamic
            return "dynamic_copy"
        return "per_item"


def _dynamic_batch_copy(path: Path, cache_dir) -> Path:
    """A copy of `path` whose input/output batch dimension is symbolic, cached by content hash."""
    import onnx

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir or Path("~/.cache/securegate/models").expanduser())
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{path.stem}.{digest}.dynamic.onnx"
    if target.exists():
        return target
    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    # Intermediate shapes recorded for batch 1 would contradict the new batch dimension.
    del model.graph.value_info[:]
    _unpin_reshape_batch(model.graph)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, target)
    return target


def _unpin_reshape_batch(graph) -> None:
    """Exporters often write `x.view(1, -1)`: a Reshape to a constant shape whose first entry is 1. ONNX's
    0 means "copy this dimension from the input", which carries the batch through. Whether the result is
    right is checked against per-item runs before the copy is used."""
    from onnx import numpy_helper

    def unpin(tensor):
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and len(shape) >= 2 and shape[0] == 1:
            shape = shape.copy()
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))

    reshape_shapes = {n.input[1] for n in graph.node if n.op_type == "Reshape" and len(n.input) > 1}
    for init in graph.initializer:
        if init.name in reshape_shapes:
            unpin(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in reshape_shapes:
            for attr in node.attribute:
                if attr.name == "value":
                    unpin(attr.t)
