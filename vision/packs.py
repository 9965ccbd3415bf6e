"""Model packs: a directory in InsightFace layout (antelopev2: ``scrfd_10g_bnkps.onnx`` + ``glintr100.onnx``,
plus landmark and attribute models we ignore). insightface's own ``model_zoo`` router tells detector,
recognizer, landmark and attribute models apart by their inputs and outputs, never by file name, and every
dimension is read from the model itself, so any InsightFace-style pack works.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_PACK = "antelopev2"
INSIGHTFACE_ROOT = Path("~/.insightface").expanduser()
# How InsightFace names its packs (antelopev2, buffalo_l): a value like this that is not a path is fetched.
PACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")

# Default accept threshold (cosine) per recognizer, measured or inherited. Operators override it per
# deployment or per tenant; `securegate eval` measures one from their own data.
#  - glintr100 (antelopev2): 0.6, the product's documented default.
#  - mobilefacenet_arcface_w128 (development pack): on ../shared/faces same-person pairs score
#    0.522-0.981 and different-person pairs at most 0.225; 0.37 sits midway in that gap.
# buffalo_l/buffalo_s's w600k_r50/w600k_mbf are absent on purpose: InsightFace publishes no threshold for them,
# so they get the fallback and a warning that it is a guess.
KNOWN_THRESHOLDS = {"glintr100": 0.6, "mobilefacenet_arcface_w128": 0.37}
FALLBACK_THRESHOLD = 0.6


class ModelPackError(RuntimeError):
    """The model pack is missing or unusable; the message says how to fix it."""


@dataclass(frozen=True)
class IgnoredModel:
    """A file in the pack that SecureGate does not run, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class ModelPack:
    """What a pack directory holds, as routed by insightface's model_zoo."""

    name: str
    root: Path
    detector_path: Path
    recognizer_path: Path
    recognizer_name: str
    embedding_dim: int
    recognizer_input_size: int  # aligned crops are square: 112 for every ArcFace model we know
    recognizer_fixed_batch: int | None  # None when the batch dimension is dynamic
    ignored: tuple[IgnoredModel, ...] = ()

    @property
    def threshold_is_known(self) -> bool:
        return self.recognizer_name in KNOWN_THRESHOLDS

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
            "model_id": self.model_id,
            "input_size": self.recognizer_input_size,
            "fixed_batch": self.recognizer_fixed_batch,
            "default_threshold": self.default_threshold,
        }


@dataclass(frozen=True)
class _Routed:
    path: Path
    kind: str  # "detector" | "recognizer" | "ignored"
    reason: str = ""
    facts: dict | None = None


def _route(path: Path) -> _Routed:
    """What insightface's model_zoo router makes of one file: SCRFD with keypoints → detector, ArcFaceONNX
    with an [N, D] output → recognizer, anything else (landmark, attribute, swapper, unroutable) → ignored."""
    import onnxruntime as ort
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    # insightface routes on a live ORT session's inputs/outputs (ModelRouter); a cheap one, dropped after.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    try:
        model = get_model(str(path), providers=["CPUExecutionProvider"], sess_options=opts)
    except Exception as exc:  # a broken file in a pack dir is reported, not fatal
        return _Routed(path, "ignored", f"insightface could not load it ({type(exc).__name__}: {_one_line(exc)})")
    if model is None:
        return _Routed(path, "ignored", "insightface's model router does not recognise it")
    task = getattr(model, "taskname", type(model).__name__)
    if isinstance(model, SCRFD):
        if not model.use_kps:
            return _Routed(path, "ignored", "SCRFD detector without keypoints (faces cannot be aligned)")
        return _Routed(path, "detector")
    if isinstance(model, ArcFaceONNX):
        shape_in = model.session.get_inputs()[0].shape
        shape_out = model.session.get_outputs()[0].shape
        if len(shape_out) != 2 or not isinstance(shape_out[1], int):
            return _Routed(path, "ignored", f"routed as recognition but its output {shape_out} is not [N, D]")
        batch = shape_in[0] if isinstance(shape_in[0], int) and shape_in[0] > 0 else None
        return _Routed(path, "recognizer", facts={"size": int(shape_in[2]), "batch": batch, "dim": int(shape_out[1])})
    kind = {"Landmark": "landmark", "Attribute": "attribute"}.get(type(model).__name__, type(model).__name__)
    return _Routed(path, "ignored", f"{kind} model ({task}); SecureGate runs only the detector and recognizer")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error (requests wraps urllib3 wraps the socket error that says what happened)."""
    while True:
        inner = getattr(exc, "reason", None) or exc.__cause__
        if inner is None and exc.args and isinstance(exc.args[0], BaseException):
            inner = exc.args[0]
        if not isinstance(inner, BaseException) or inner is exc:
            return exc
        exc = inner


def find_model_dir(directory: Path) -> Path | None:
    """The folder holding the pack's .onnx files: `directory` itself, or its one subfolder that does
    (antelopev2.zip unpacks to antelopev2/antelopev2/*.onnx)."""
    if any(directory.glob("*.onnx")):
        return directory
    if not directory.is_dir():
        return None
    nested = sorted(d for d in directory.iterdir() if d.is_dir() and any(d.glob("*.onnx")))
    if len(nested) > 1:
        names = ", ".join(d.name for d in nested)
        raise ModelPackError(f"{directory} holds several model folders ({names}); point at one of them")
    return nested[0] if nested else None


def load_pack(directory: str | os.PathLike, recognizer: str | None = None) -> ModelPack:
    """Route every .onnx in a pack directory (or its one nested model folder) with insightface's model_zoo.
    With several recognizers, `recognizer` (a file stem) picks one; else a dynamic-batch model is preferred
    (it batches natively), then the first by name. Every file not used is listed in `ignored` with why."""
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise ModelPackError(f"model pack directory {root} does not exist")
    root = find_model_dir(root) or root
    routed = [_route(path) for path in sorted(root.glob("*.onnx"))]
    detectors = [r for r in routed if r.kind == "detector"]
    recognizers = [r for r in routed if r.kind == "recognizer"]
    ignored = [IgnoredModel(r.path.name, r.reason) for r in routed if r.kind == "ignored"]
    not_used = "; ".join(f"{i.file}: {i.reason}" for i in ignored)
    if not detectors:
        raise ModelPackError(f"{root} holds no face detector with keypoint outputs (SCRFD *_kps / *_bnkps)"
                             + (f"; found only {not_used}" if not_used else ""))
    if not recognizers:
        raise ModelPackError(f"{root} holds no recognition model (ArcFace-style, e.g. glintr100.onnx or w600k_r50.onnx)"
                             + (f"; found only {not_used}" if not_used else ""))
    if recognizer is not None:
        chosen = [r for r in recognizers if r.path.stem == recognizer]
        if not chosen:
            raise ModelPackError(f"{root} has no recognizer named {recognizer!r} "
                                 f"(recognizers: {', '.join(r.path.stem for r in recognizers)})")
    else:
        chosen = sorted(recognizers, key=lambda r: (r.facts["batch"] is not None, r.path.name))
    rec = chosen[0]
    ignored += [IgnoredModel(d.path.name, f"another detector is used ({detectors[0].path.name})")
                for d in detectors[1:]]
    ignored += [IgnoredModel(r.path.name, f"another recognizer is used ({rec.path.name})")
                for r in recognizers if r is not rec]
    pack = ModelPack(
        name=root.name,
        root=root,
        detector_path=detectors[0].path,
        recognizer_path=rec.path,
        recognizer_name=rec.path.stem,
        embedding_dim=rec.facts["dim"],
        recognizer_input_size=rec.facts["size"],
        recognizer_fixed_batch=rec.facts["batch"],
        ignored=tuple(sorted(ignored, key=lambda i: i.file)),
    )
    if not pack.threshold_is_known:
        log.warning("recognizer %s has no known accept threshold: the default %.2f is a guess; measure one on your "
                    "own photos with `securegate eval`", pack.recognizer_name, pack.default_threshold)
    return pack


def resolve_pack(explicit: str | None = None, *, allow_download: bool = True) -> ModelPack:
    """Where models come from, in order: explicit option or SECUREGATE_MODELS (a directory, or the name of
    an InsightFace pack such as buffalo_l), then ~/.insightface/models/antelopev2. A named pack missing
    from ~/.insightface is fetched through insightface (with a progress bar) when `allow_download`; a
    failed fetch is one ModelPackError line that says where to place the files by hand."""
    chosen = explicit or os.environ.get("SECUREGATE_MODELS")
    recognizer = os.environ.get("SECUREGATE_RECOGNIZER") or None
    if chosen and (Path(chosen).expanduser().exists() or not PACK_NAME.fullmatch(chosen)):
        return load_pack(chosen, recognizer)
    name = chosen or DEFAULT_PACK
    pack_dir = INSIGHTFACE_ROOT / "models" / name
    if (not pack_dir.is_dir() or find_model_dir(pack_dir) is None) and allow_download:
        fetch_pack(name, pack_dir)
    return load_pack(pack_dir, recognizer)


def fetch_pack(name: str, pack_dir: Path) -> None:
    """Download and unzip an InsightFace pack into `pack_dir` through insightface's own downloader."""
    from insightface.utils import storage

    log.info("fetching model pack %s from the InsightFace model zoo into %s", name, pack_dir)
    try:
        # force: an earlier attempt that failed while unzipping leaves the folder without models, and
        # insightface skips any folder that exists.
        storage.download("models", name, force=pack_dir.exists(), root=str(INSIGHTFACE_ROOT))
        if find_model_dir(pack_dir) is None:
            raise ModelPackError(f"the downloaded {name}.zip holds no .onnx files")
    except Exception as exc:
        cause = _root_cause(exc)
        alternative = "" if name == "buffalo_l" else ", or use buffalo_l instead (SECUREGATE_MODELS=buffalo_l)"
        raise ModelPackError(
            f"could not download model pack {name} from {storage.model_zoo_download_url(name + '.zip')} "
            f"({type(cause).__name__}: {_one_line(cause)}); place its .onnx "
            f"files in {pack_dir} by hand, or point SECUREGATE_MODELS (or --models) at a pack directory "
            f"(offline development: SECUREGATE_MODELS=../shared/models){alternative}"
        ) from exc
