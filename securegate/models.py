"""Model packs and the two models SecureGate runs: one small class per model.

A *pack* is a directory in InsightFace layout (for antelopev2: ``scrfd_10g_bnkps.onnx`` + ``glintr100.onnx``
and files we ignore). We tell the detector from the recognizer by their inputs and outputs, never by file
name, and read every dimension from the model itself, so any InsightFace-style pack works.

Inference goes through insightface's own ``model_zoo`` classes (SCRFD decoding, ArcFaceONNX preprocessing)
and ``face_align.norm_crop``; batching policy lives outside these classes (in the Embedder deployment).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_PACK = "antelopev2"
INSIGHTFACE_ROOT = Path("~/.insightface").expanduser()

# Default accept threshold (cosine) per recognizer, measured or inherited. Operators override it per
# deployment or per tenant; `securegate eval` measures one from their own data.
#  - glintr100 (antelopev2): 0.6, the product's documented default.
#  - mobilefacenet_arcface_w128 (development pack): on ../shared/faces same-person pairs score
#    0.522-0.981 and different-person pairs at most 0.225; 0.37 sits midway in that gap.
KNOWN_THRESHOLDS = {"glintr100": 0.6, "mobilefacenet_arcface_w128": 0.37}
FALLBACK_THRESHOLD = 0.6


class ModelPackError(RuntimeError):
    """The model pack is missing or unusable; the message says how to fix it."""


@dataclass(frozen=True)
class ModelPack:
    """What a pack directory holds, as read from the ONNX graphs."""

    name: str
    root: Path
    detector_path: Path
    recognizer_path: Path
    recognizer_name: str
    embedding_dim: int
    recognizer_input_size: int  # aligned crops are square: 112 for every ArcFace model we know
    recognizer_fixed_batch: int | None  # None when the batch dimension is dynamic

    @property
    def default_threshold(self) -> float:
        return KNOWN_THRESHOLDS.get(self.recognizer_name, FALLBACK_THRESHOLD)

    @property
    def model_id(self) -> str:
        """What a stored vector is bound to: recognizer and dimension."""
        return f"{self.recognizer_name}/{self.embedding_dim}"

    def describe(self) -> dict:
        return {
            "pack": self.name,
            "name": self.recognizer_name,
            "dim": self.embedding_dim,
            "input_size": self.recognizer_input_size,
            "fixed_batch": self.recognizer_fixed_batch,
            "default_threshold": self.default_threshold,
        }


def _dim(d) -> int | None:
    return int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None


def _classify(path: Path) -> tuple[str, dict] | None:
    """('detector'|'recognizer', facts) from the graph's inputs and outputs, or None to ignore the file."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # a broken file in a pack dir is reported, not fatal
        log.warning("ignoring %s: not a loadable ONNX model (%s)", path.name, exc)
        return None
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return None
    shape = [_dim(d) for d in inputs[0].type.tensor_type.shape.dim]
    outputs = list(graph.output)
    # SCRFD with keypoints: scores, boxes and keypoints at 3 strides (9 outputs; 10 for 5-stride variants).
    if len(outputs) >= 9 and len(outputs) % 3 == 0:
        return "detector", {}
    if len(outputs) == 1 and len(shape) == 4 and shape[2] and shape[2] == shape[3] and shape[2] >= 112:
        out_shape = [_dim(d) for d in outputs[0].type.tensor_type.shape.dim]
        if len(out_shape) == 2 and out_shape[1]:
            return "recognizer", {"size": shape[2], "batch": shape[0], "dim": out_shape[1]}
    return None


def load_pack(directory: str | os.PathLike, recognizer: str | None = None) -> ModelPack:
    """Inspect a pack directory. With several recognizers, `recognizer` (a file stem) picks one; else a
    dynamic-batch model is preferred (it batches natively), then the first by name."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise ModelPackError(f"model pack directory {root} does not exist")
    detectors, recognizers = [], []
    for path in sorted(root.glob("*.onnx")):
        kind = _classify(path)
        if kind is None:
            continue
        (detectors if kind[0] == "detector" else recognizers).append((path, kind[1]))
    if not detectors:
        raise ModelPackError(f"{root} holds no face detector with keypoint outputs (SCRFD *_kps / *_bnkps)")
    if not recognizers:
        raise ModelPackError(f"{root} holds no recognition model (ArcFace-style, square input >= 112)")
    if recognizer is not None:
        recognizers = [r for r in recognizers if r[0].stem == recognizer]
        if not recognizers:
            raise ModelPackError(f"{root} has no recognizer named {recognizer!r}")
    recognizers.sort(key=lambda r: (r[1]["batch"] is not None, r[0].name))
    rec_path, facts = recognizers[0]
    return ModelPack(
        name=root.name,
        root=root,
        detector_path=detectors[0][0],
        recognizer_path=rec_path,
        recognizer_name=rec_path.stem,
        embedding_dim=facts["dim"],
        recognizer_input_size=facts["size"],
        recognizer_fixed_batch=facts["batch"],
    )


def resolve_pack(explicit: str | None = None, *, allow_download: bool = True) -> ModelPack:
    """Where models come from, in order: explicit option or SECUREGATE_MODELS, then
    ~/.insightface/models/antelopev2 (fetched through insightface when missing and online), else an error
    that says how to provide a directory offline."""
    chosen = explicit or os.environ.get("SECUREGATE_MODELS")
    recognizer = os.environ.get("SECUREGATE_RECOGNIZER") or None
    if chosen:
        return load_pack(chosen, recognizer)
    default_dir = INSIGHTFACE_ROOT / "models" / DEFAULT_PACK
    if not any(default_dir.glob("*.onnx")) and allow_download:
        try:
            from insightface.utils.storage import ensure_available

            ensure_available("models", DEFAULT_PACK, root=str(INSIGHTFACE_ROOT))
        except Exception as exc:
            raise ModelPackError(
                f"no model pack: SECUREGATE_MODELS is unset and {DEFAULT_PACK} could not be fetched into "
                f"{default_dir} ({exc}). Offline, point SECUREGATE_MODELS (or --models) at a directory "
                "holding an SCRFD detector .onnx with keypoints and an ArcFace recognizer .onnx, "
                "e.g. SECUREGATE_MODELS=../shared/models."
            ) from exc
    return load_pack(default_dir, recognizer)


def onnx_providers(use_gpu: bool) -> list[str]:
    """CUDA first when this process was given a GPU and ONNX Runtime has the CUDA EP, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if use_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if use_gpu:
        log.warning("a GPU was assigned but ONNX Runtime has no CUDA EP (install the [gpu] extra); using CPU")
    return ["CPUExecutionProvider"]


def session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    # ORT's pool threads busy-wait between ops by default; in a Serve replica that steals the CPU the
    # replica needs to take in the next batch's requests (measured in benchmarks/embed.py).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


@dataclass(frozen=True)
class DetectedFace:
    bbox: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]  # 5 points: eyes, nose, mouth corners
    score: float
    crop: np.ndarray  # aligned BGR uint8, recognizer_input_size square

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def summary(self) -> dict:
        return {
            "bbox": [round(v, 2) for v in self.bbox],
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
            "score": round(self.score, 4),
        }


class FaceDetector:
    """SCRFD through insightface: image (BGR) → faces with 5 landmarks and aligned crops."""

    def __init__(
        self,
        pack: ModelPack,
        providers: list[str],
        det_size: int = 640,
        det_thresh: float = 0.5,
        threads: int | None = None,
    ) -> None:
        from insightface.model_zoo import get_model

        self.pack = pack
        self._model = get_model(str(pack.detector_path), providers=providers, sess_options=session_options(threads))
        # ctx_id 0 keeps the providers we chose; insightface's ctx_id<0 would force CPU.
        self._model.prepare(0, input_size=(det_size, det_size), det_thresh=det_thresh)
        self.providers = list(self._model.session.get_providers())

    def set_threshold(self, det_thresh: float) -> None:
        self._model.det_thresh = float(det_thresh)

    def detect(self, image_bgr: np.ndarray, max_faces: int = 0) -> list[DetectedFace]:
        from insightface.utils.face_align import norm_crop

        # SCRFD fits the long side to its input square and truncates the short side, which becomes 0 px
        # from an aspect ratio of side:1 on (cv2.resize then asserts). A strip under a pixel high holds no
        # face, so such an image gets the normal no-face answer without running the model.
        height, width = image_bgr.shape[:2]
        side = min(min(size) for size in (getattr(self._model, "input_sizes", None) or [self._model.input_size]))
        if min(height, width) * side <= max(height, width):
            return []
        boxes, kps = self._model.detect(image_bgr, max_num=max_faces)
        size = self.pack.recognizer_input_size
        faces = []
        for box, points in zip(boxes, kps):
            crop = norm_crop(image_bgr, landmark=points, image_size=size)
            faces.append(
                DetectedFace(
                    bbox=tuple(float(v) for v in box[:4]),
                    landmarks=tuple((float(x), float(y)) for x, y in points),
                    score=float(box[4]),
                    crop=crop,
                )
            )
        return faces


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
        crops = list(crops)
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        if self.strategy == "per_item":
            raw = np.concatenate([self._model.get_feat([c]) for c in crops])
        else:
            raw = self._model.get_feat(crops)
        raw = raw.astype(np.float32, copy=False)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

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
