"""Run the service's own pipeline (image decoding, detector, embedder, batch size) over a photo folder and
score every pair: the part of `securegate eval` that needs the models."""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from evaluation.dataset import list_dataset, read_groups
from evaluation.metrics import pair_scores
from evaluation.report import Evaluation, build_report


def _progress(iterable, total: int, desc: str, enabled: bool, unit: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def evaluate(directory: str | os.PathLike, *, models: str | None = None, groups: str | os.PathLike | None = None,
             target_far: float = 1e-3, progress: bool = False, threads: int | None = None) -> Evaluation:
    """Detect and embed every image under `directory/<identity>/`, score all pairs and compute the report."""
    from securegate import errors
    from vision import images
    from vision.detector import FaceDetector
    from vision.embedder import FaceEmbedder
    from vision.packs import resolve_pack
    from vision.quality import measure
    from vision.runtime import onnx_providers
    from securegate.settings import Settings

    started = time.time()
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    dataset, ignored = list_dataset(root)
    if len(dataset) < 2:
        raise ValueError(f"{root} holds {len(dataset)} identity folder(s); need at least 2 (one folder per person)")
    groups_path = Path(groups) if groups else (root / "groups.csv" if (root / "groups.csv").is_file() else None)
    group_map = read_groups(groups_path) if groups_path else None

    # The service's own defaults: same decoder limits, detector size/threshold and embedder batch size.
    settings = Settings.from_args({"models": models} if models else {})
    pack = resolve_pack(settings.models)
    providers = onnx_providers(use_gpu=False)
    detector = FaceDetector(pack, providers, det_size=settings.detector.det_size,
                            det_thresh=settings.detector.det_thresh, threads=threads)  # one photo at a time: ORT's default threads
    embedder = FaceEmbedder(pack, providers, threads=threads or settings.embedder.threads)
    batch = settings.embedder.max_batch_size

    crops, labels, paths, skipped, qualities = [], [], [], [], []
    items = [(ident, f) for ident, files in dataset.items() for f in files]
    # insightface's norm_crop warns once per face about a scikit-image deprecation; it would shred the
    # progress bar and says nothing about the evaluation.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")
        for ident, path in _progress(items, len(items), "detect", progress, "img"):
            try:
                pixels = images.decode(path.read_bytes(), settings.limits.max_image_pixels)
            except errors.ApiError as exc:
                skipped.append({"path": str(path), "reason": exc.code, "faces": None, "detail": exc.message})
                continue
            faces = detector.detect(pixels, max_faces=0)  # all of them: a second face must be seen to be refused
            if len(faces) != 1:
                # Several faces: which one is the labelled person is unknown, so the image cannot be scored.
                skipped.append({"path": str(path), "reason": "no_face" if not faces else "several_faces",
                                "faces": len(faces)})
                continue
            crops.append(faces[0].crop)
            qualities.append(measure(faces[0].bbox, faces[0].landmarks, faces[0].crop, faces[0].score).score())
            labels.append(ident)
            paths.append(str(path))

    chunks = range(0, len(crops), batch)
    vectors = [embedder.embed(crops[i:i + batch]) for i in _progress(chunks, len(chunks), f"embed ({batch}/batch)", progress, "batch")]
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)

    label_arr = np.array(labels)
    scores = pair_scores(embeddings, label_arr)
    if scores.genuine.size == 0 or scores.impostor.size == 0:
        raise ValueError(f"{len(labels)} usable images give {scores.genuine.size} genuine and "
                         f"{scores.impostor.size} impostor pairs: need at least one identity with 2 usable "
                         "images and 2 identities with a usable image")

    report = build_report(scores, embeddings, label_arr, paths, target_far=target_far, group_map=group_map,
                          quality=np.array(qualities))
    per_identity = {ident: {"images": len(files), "used": int(np.sum(label_arr == ident))} for ident, files in dataset.items()}
    report["dataset"] = {
        "dir": str(root),
        "groups_csv": str(groups_path) if groups_path else None,
        "identities": per_identity,
        "identities_without_genuine_pairs": sorted(i for i, v in per_identity.items() if v["used"] < 2),
        "skipped": skipped,
        "ignored_files": ignored,
    }
    report["counts"] = {
        "identities": len(dataset),
        "images": len(items),
        "images_used": len(labels),
        "images_skipped": len(skipped),
        "genuine_pairs": int(scores.genuine.size),
        "impostor_pairs": int(scores.impostor.size),
    }
    report["model"] = {**pack.describe(), "detector": pack.detector_path.name, "recognizer": pack.recognizer_path.name,
                       "embedder_strategy": embedder.strategy}
    report["pipeline"] = {"det_size": settings.detector.det_size, "det_thresh": settings.detector.det_thresh,
                          "max_image_pixels": settings.limits.max_image_pixels, "embed_batch_size": batch,
                          "providers": embedder.providers}
    report["elapsed_s"] = round(time.time() - started, 2)
    order = ["generated_at", "counts", "model", "chosen", "eer", "target_far", "identification", "groups", "quality_bands", "grid",
             "scores", "dataset", "pipeline", "elapsed_s", "conventions"]
    report = {k: report[k] for k in order if k in report}
    return Evaluation(report, scores, embeddings, labels, paths)
