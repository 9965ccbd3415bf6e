"""`securegate eval`: measure accept/reject thresholds, DET curves and identification accuracy from a folder
of labelled photos, through the same detector, embedder and image decoding as the service.

The metric functions are small, pure and vectorised (numpy arrays in, numbers out) so they can be tested on
hand-made scores; `evaluate` runs the models and `write_report` turns the result into files.

Conventions, matching the service (`similarity >= threshold` is a match):
  FAR(t) = share of impostor pairs (two different people) with similarity >= t  (false accepts)
  FRR(t) = share of genuine pairs (same person)            with similarity <  t  (false rejects)
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
TARGET_FARS = (1e-2, 1e-3, 1e-4)
GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)  # thresholds reported in the table; cosine in [-1, 1]
TOP_KS = (1, 3, 5)
GROUP_FLAG_RATIO = 2.0
_BLOCK = 2048  # rows of the similarity matrix computed at once: bounds memory at ~BLOCK*N floats


# ============================================================================= metrics (pure functions)
@dataclass(frozen=True)
class PairScores:
    genuine: np.ndarray  # float64, one cosine similarity per same-identity pair
    impostor: np.ndarray  # float64, one per different-identity pair
    genuine_label: np.ndarray  # identity label of each genuine pair (for per-group FRR)


def pair_scores(embeddings: np.ndarray, labels: np.ndarray) -> PairScores:
    """Cosine similarity of every unordered pair of (unit) embeddings, split into genuine and impostor.

    Only the upper triangle is kept (a pair counted once, never an image with itself), and it is built in
    row blocks so a large set never materialises the full N x N matrix at once."""
    emb = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(labels)
    genuine, impostor, gen_label = [], [], []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        sims = (emb[start:stop] @ emb[start:].T).astype(np.float64)
        rows = np.arange(start, stop)[:, None]
        cols = np.arange(start, n)[None, :]
        upper = cols > rows
        same = labels[start:stop, None] == labels[None, start:]
        genuine.append(sims[upper & same])
        impostor.append(sims[upper & ~same])
        gen_label.append(np.broadcast_to(labels[start:stop, None], sims.shape)[upper & same])
    if not genuine:
        empty = np.zeros(0)
        return PairScores(empty, empty, labels[:0])
    return PairScores(np.concatenate(genuine), np.concatenate(impostor), np.concatenate(gen_label))


def far_frr(genuine: np.ndarray, impostor: np.ndarray, thresholds: np.ndarray | Sequence[float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) at each threshold. Sorting once and binary-searching makes this O((G+I) log) for any
    number of thresholds, which matters when every observed score is a candidate threshold."""
    gen = np.sort(np.asarray(genuine, dtype=np.float64))
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    t = np.asarray(thresholds, dtype=np.float64)
    # side="left": scores equal to t count as accepted, as in the service's `similarity >= threshold`.
    far = (imp.size - np.searchsorted(imp, t, side="left")) / max(imp.size, 1)
    frr = np.searchsorted(gen, t, side="left") / max(gen.size, 1)
    return far, frr


def just_above(score: float, decimals: int = 4) -> float:
    """The smallest `decimals`-place number strictly above `score`: a threshold an operator can type that
    still rejects a pair scoring exactly `score`."""
    scale = 10**decimals
    t = math.ceil(score * scale) / scale
    if t <= score:
        t = (math.ceil(score * scale) + 1) / scale
    return round(t, decimals)


@dataclass(frozen=True)
class FarThreshold:
    target_far: float
    threshold: float  # lowest threshold with FAR <= target; when unsupported, the one above every impostor
    supported: bool  # False when the data cannot resolve the target (fewer than 1/target impostor pairs)
    impostor_pairs: int
    allowed_false_accepts: int  # impostor pairs the target lets score >= threshold: floor(target * N)

    @property
    def min_measurable_far(self) -> float:
        return 1.0 / self.impostor_pairs if self.impostor_pairs else float("nan")


def threshold_at_far(impostor: np.ndarray, target_far: float) -> FarThreshold:
    """Lowest threshold whose FAR on these impostor pairs is <= target_far.

    With N impostor pairs FAR moves in steps of 1/N, so a target below 1/N is not measurable: no false
    accept among N pairs says nothing about a rate of 1 in 10N. Then `supported` is False and `threshold`
    is merely the one above every impostor (FAR 0 observed, true FAR unknown)."""
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]  # highest first
    n = int(imp.size)
    if n == 0:
        raise ValueError("no impostor pairs: need at least two identities")
    allowed = int(math.floor(target_far * n + 1e-9))  # the epsilon keeps e.g. 1e-3 * 1000 from flooring to 0
    if allowed >= n:
        return FarThreshold(target_far, float(imp[-1]), True, n, allowed)
    # The threshold must sit above the (allowed+1)-th highest impostor score, and no higher than needed.
    return FarThreshold(target_far, just_above(float(imp[allowed])), allowed >= 1, n, allowed)


def eer(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(equal error rate, its threshold). FAR and FRR only change at observed scores, so every observed
    score (and +inf) is tried; the EER is the mean of FAR and FRR where they are closest. The threshold is
    the middle of the score interval that achieves it, not an edge, so it does not sit on a data point
    (for perfectly separated scores: midway between the best impostor and the worst genuine pair)."""
    gen = np.asarray(genuine, dtype=np.float64)
    imp = np.asarray(impostor, dtype=np.float64)
    if gen.size == 0 or imp.size == 0:
        raise ValueError("EER needs both genuine and impostor pairs")
    cands = np.unique(np.concatenate([gen, imp]))
    t = np.append(cands, np.inf)
    far, frr = far_frr(gen, imp, t)
    # Closest FAR/FRR first; among equals, the lower total error.
    i = int(np.lexsort((far + frr, np.abs(far - frr)))[0])
    # Threshold t[i] gives the same errors as any t in (cands[i-1], cands[i]]; take its middle.
    if i == len(cands):
        threshold = just_above(float(cands[-1]))
    elif i == 0:
        threshold = float(cands[0])
    else:
        threshold = float((cands[i - 1] + cands[i]) / 2)
    return float((far[i] + frr[i]) / 2), threshold


def identification_accuracy(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray,
                            probe_labels: np.ndarray, ks: Iterable[int] = TOP_KS) -> dict[int, float]:
    """Closed-set rank-k accuracy: share of probes whose identity is among the k gallery identities most
    similar to it. An identity with several gallery images scores by its best one."""
    gallery_labels = np.asarray(gallery_labels)
    probe_labels = np.asarray(probe_labels)
    identities = np.unique(gallery_labels)
    if not np.isin(probe_labels, identities).all():
        raise ValueError("closed-set identification: every probe identity must be in the gallery")
    sims = np.asarray(probes, np.float32) @ np.asarray(gallery, np.float32).T
    # Best gallery image per identity: columns = identities.
    per_id = np.stack([sims[:, gallery_labels == ident].max(axis=1) for ident in identities], axis=1)
    order = np.argsort(-per_id, axis=1, kind="stable")
    ranked = identities[order]
    # Rank (0-based) of the true identity; it is always present, so argmax finds it.
    rank = np.argmax(ranked == probe_labels[:, None], axis=1)
    return {int(k): float(np.mean(rank < k)) if len(rank) else float("nan") for k in ks}


def group_frr(genuine: np.ndarray, genuine_groups: np.ndarray, threshold: float,
              flag_ratio: float = GROUP_FLAG_RATIO) -> dict:
    """FRR per group at one fixed threshold (the operator sets one threshold per tenant, so that is the
    threshold every group lives with). A group is flagged when its FRR exceeds `flag_ratio` times the best
    group's; when the best group has no false rejects, any group with one is flagged."""
    genuine = np.asarray(genuine, dtype=np.float64)
    genuine_groups = np.asarray(genuine_groups).astype(str)
    groups: dict[str, dict] = {}
    for g in np.unique(genuine_groups):
        s = genuine[genuine_groups == g]
        rejects = int(np.sum(s < threshold))
        groups[str(g)] = {"genuine_pairs": int(s.size), "false_rejects": rejects, "frr": rejects / s.size}
    if not groups:
        return {"threshold": threshold, "flag_ratio": flag_ratio, "best_group": None, "groups": {}, "flagged": []}
    best_group = min(groups, key=lambda g: (groups[g]["frr"], -groups[g]["genuine_pairs"]))
    best = groups[best_group]["frr"]
    for info in groups.values():
        info["ratio_to_best"] = (info["frr"] / best) if best > 0 else (None if info["frr"] > 0 else 1.0)
        info["flagged"] = bool(info["frr"] > flag_ratio * best)
    return {"threshold": threshold, "flag_ratio": flag_ratio, "best_group": best_group, "best_frr": best,
            "groups": groups, "flagged": sorted(g for g, i in groups.items() if i["flagged"])}


def far_upper_bound(false_accepts: int, pairs: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound on the true FAR after `false_accepts` in `pairs` trials: how
    bad the FAR could still be. With 0 errors it is about 3/N (the "rule of three")."""
    if pairs <= 0:
        return 1.0
    if false_accepts >= pairs:
        return 1.0
    alpha = 1.0 - confidence
    ks = np.arange(false_accepts + 1)
    log_comb = np.array([math.lgamma(pairs + 1) - math.lgamma(k + 1) - math.lgamma(pairs - k + 1) for k in ks])

    def cdf(p: float) -> float:  # P(X <= false_accepts | pairs, p)
        return float(np.exp(log_comb + ks * math.log(p) + (pairs - ks) * math.log1p(-p)).sum())

    lo, hi = false_accepts / pairs, 1.0
    for _ in range(60):  # bisection: cdf falls as p grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(max(mid, 1e-300)) > alpha else (lo, mid)
    return hi


# ============================================================================= dataset and models
@dataclass
class Evaluation:
    report: dict
    scores: PairScores
    embeddings: np.ndarray
    labels: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def list_dataset(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """identity → its image files (sorted by name), and the non-image files that were ignored."""
    identities: dict[str, list[Path]] = {}
    ignored: list[str] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in person.iterdir() if f.is_file() and not f.name.startswith("."))
        identities[person.name] = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        ignored += [str(f) for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
    return identities, ignored


def read_groups(path: Path) -> dict[str, dict[str, str]]:
    """attribute → {identity → group} from a CSV with an `identity` column; every other column is one
    grouping attribute (e.g. `identity,sex,age_band`)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "identity" not in reader.fieldnames:
            raise ValueError(f"{path}: needs a header with an 'identity' column, e.g. identity,group")
        attributes = [c for c in reader.fieldnames if c != "identity"]
        if not attributes:
            raise ValueError(f"{path}: needs at least one group column besides 'identity'")
        out: dict[str, dict[str, str]] = {a: {} for a in attributes}
        for row in reader:
            for a in attributes:
                value = (row.get(a) or "").strip()
                if value:
                    out[a][row["identity"].strip()] = value
    return out


def _progress(iterable, total: int, desc: str, enabled: bool, unit: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def evaluate(directory: str | os.PathLike, *, models: str | None = None, groups: str | os.PathLike | None = None,
             target_far: float = 1e-3, progress: bool = False, threads: int | None = None) -> Evaluation:
    """Detect and embed every image under `directory/<identity>/`, score all pairs and compute the report."""
    from securegate import errors, images
    from securegate.models import FaceDetector, FaceEmbedder, onnx_providers, resolve_pack
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
                            det_thresh=settings.detector.det_thresh, threads=threads or settings.detector.threads)
    embedder = FaceEmbedder(pack, providers, threads=threads or settings.embedder.threads)
    batch = settings.embedder.max_batch_size

    crops, labels, paths, skipped = [], [], [], []
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

    report = build_report(scores, embeddings, label_arr, paths, target_far=target_far, group_map=group_map)
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
    order = ["generated_at", "counts", "model", "chosen", "eer", "target_far", "identification", "groups", "grid",
             "scores", "dataset", "pipeline", "elapsed_s", "conventions"]
    report = {k: report[k] for k in order if k in report}
    return Evaluation(report, scores, embeddings, labels, paths)


def build_report(scores: PairScores, embeddings: np.ndarray, labels: np.ndarray, paths: Sequence[str], *,
                 target_far: float, group_map: dict[str, dict[str, str]] | None = None) -> dict:
    """Every number of report.json that follows from the scores (no models needed)."""
    gen, imp = scores.genuine, scores.impostor

    def at(t: float) -> dict:
        far, frr = far_frr(gen, imp, [t])
        fa, fr = int(round(far[0] * imp.size)), int(round(frr[0] * gen.size))
        return {"threshold": round(float(t), 6), "far": float(far[0]), "frr": float(frr[0]),
                "false_accepts": fa, "false_rejects": fr}

    eer_value, eer_t = eer(gen, imp)
    targets = []
    for target in sorted(set(TARGET_FARS) | {target_far}, reverse=True):
        ft = threshold_at_far(imp, target)
        row = {"target_far": target, "supported": ft.supported, "impostor_pairs": ft.impostor_pairs,
               "min_measurable_far": ft.min_measurable_far, "allowed_false_accepts": ft.allowed_false_accepts,
               "impostor_pairs_needed": math.ceil(1 / target)}
        if ft.supported:
            m = at(ft.threshold)
            row.update(m, far_upper_95=far_upper_bound(m["false_accepts"], imp.size))
        else:
            row.update(
                threshold=None,
                reason=(f"{imp.size} impostor pairs: the smallest measurable FAR is 1/{imp.size} = "
                        f"{1 / imp.size:.2g}, above the target {target:g}; at least {math.ceil(1 / target)} "
                        f"impostor pairs are needed (about {math.ceil(3 / target)} to bound it at 95% "
                        "confidence with zero false accepts)"),
                zero_far_threshold=at(ft.threshold) | {"far_upper_95": far_upper_bound(0, imp.size)},
            )
        targets.append(row)

    chosen_row = next(r for r in targets if r["target_far"] == target_far)
    if chosen_row["supported"]:
        chosen = {"threshold": chosen_row["threshold"], "source": "target_far", "target_far": target_far}
    else:
        chosen = {"threshold": round(eer_t, 6), "source": "eer", "target_far": target_far,
                  "why": f"target FAR {target_far:g} is not measurable on {imp.size} impostor pairs"}
    chosen.update({k: v for k, v in at(chosen["threshold"]).items() if k != "threshold"})

    report: dict = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conventions": {"match": "similarity >= threshold (cosine of unit embeddings)",
                        "far": "impostor pairs (different identities) accepted / impostor pairs",
                        "frr": "genuine pairs (same identity) rejected / genuine pairs"},
        "eer": {"eer": eer_value, **{k: v for k, v in at(eer_t).items()}},
        "target_far": targets,
        "chosen": chosen,
        "grid": [at(float(t)) for t in GRID],
        "scores": {name: {"pairs": int(s.size), "min": float(s.min()), "max": float(s.max()),
                          "mean": float(s.mean()), "median": float(np.median(s))}
                   for name, s in (("genuine", gen), ("impostor", imp))},
    }
    report["identification"] = _identification(embeddings, labels, paths)
    if group_map is not None:
        report["groups"] = _groups(scores, embeddings, labels, group_map, chosen)
    return report


def _identification(embeddings: np.ndarray, labels: np.ndarray, paths: Sequence[str]) -> dict:
    """Gallery = each identity's first usable image by file name; probes = the rest."""
    first: dict[str, int] = {}
    for i in sorted(range(len(paths)), key=lambda i: Path(paths[i]).name):
        first.setdefault(str(labels[i]), i)
    g_idx = np.array(sorted(first.values()), dtype=int)
    p_idx = np.array([i for i in range(len(labels)) if i not in set(g_idx.tolist())], dtype=int)
    out = {"gallery_size": int(g_idx.size), "probes": int(p_idx.size),
           "gallery": [paths[i] for i in g_idx]}
    if p_idx.size == 0:
        out.update({f"top{k}": None for k in TOP_KS})
        return out
    acc = identification_accuracy(embeddings[g_idx], labels[g_idx], embeddings[p_idx], labels[p_idx])
    out.update({f"top{k}": v for k, v in acc.items()})
    trivial = [k for k in TOP_KS if k >= g_idx.size]
    if trivial:
        out["note"] = (f"top-{'/'.join(map(str, trivial))} cannot miss with {g_idx.size} gallery identities "
                       "(k >= gallery size)")
    return out


def _groups(scores: PairScores, embeddings: np.ndarray, labels: np.ndarray, group_map: dict[str, dict[str, str]],
            chosen: dict) -> dict:
    """Per attribute: FRR per group at the chosen (fixed-FAR) threshold, plus same-group impostor FAR."""
    t = float(chosen["threshold"])
    out = {"threshold": t, "threshold_source": chosen["source"], "attributes": {}}
    for attribute, mapping in group_map.items():
        known = np.array([str(lbl) in mapping for lbl in scores.genuine_label], dtype=bool)
        gen_groups = np.array([mapping.get(str(lbl), "") for lbl in scores.genuine_label])
        result = group_frr(scores.genuine[known], gen_groups[known], t)
        for g, info in result["groups"].items():
            members = np.array([mapping.get(str(lbl)) == g for lbl in labels])
            imp = pair_scores(embeddings[members], labels[members]).impostor
            info["identities"] = sorted({str(lbl) for lbl in labels[members]})
            info["impostor_pairs_same_group"] = int(imp.size)
            info["far_same_group"] = float(np.mean(imp >= t)) if imp.size else None
        result["unassigned_identities"] = sorted({str(lbl) for lbl in labels} - set(mapping))
        out["attributes"][attribute] = result
    return out


# ============================================================================= output
def write_report(evaluation: Evaluation, out_dir: str | os.PathLike) -> dict[str, Path]:
    """report.json, report.md, det.png and histogram.png into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = evaluation.report
    files = {"json": out / "report.json", "md": out / "report.md", "det": out / "det.png",
             "histogram": out / "histogram.png"}
    files["json"].write_text(json.dumps(_jsonable(r), indent=2) + "\n")
    _plot_det(evaluation, files["det"])
    _plot_histogram(evaluation, files["histogram"])
    files["md"].write_text(summary_markdown(r))
    return files


def _jsonable(value):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _model_line(r: dict) -> str:
    m, c = r["model"], r["counts"]
    return (f"{m['name']} ({m['dim']}-d) + {m['detector']}\n{c['identities']} identities, {c['images_used']}/"
            f"{c['images']} images used, {c['genuine_pairs']} genuine / {c['impostor_pairs']} impostor pairs")


def _source(chosen: dict) -> str:
    return f"target FAR {chosen['target_far']:g}" if chosen["source"] == "target_far" else "EER"


def _plot_det(ev: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, gen, imp = ev.report, ev.scores.genuine, ev.scores.impostor
    t = np.append(np.unique(np.concatenate([gen, imp])), np.inf)
    far, frr = far_frr(gen, imp, t)
    # Log axes cannot show 0: zero error rates are drawn on a floor line below 1/N, labelled as such.
    floor_far, floor_frr = 0.5 / imp.size, 0.5 / gen.size
    lo = min(floor_far, floor_frr, 1e-4) / 2
    fig, ax = plt.subplots(figsize=(8, 7.5), dpi=110)
    ax.step(np.maximum(far, floor_far), np.maximum(frr, floor_frr), where="post", color="tab:blue", lw=2,
            label="DET curve (every threshold)")
    ax.axvline(floor_far, color="grey", ls=":", lw=1)
    ax.axhline(floor_frr, color="grey", ls=":", lw=1)
    ax.text(floor_far / 1.12, lo * 3, f"FAR = 0 observed (< 1/{imp.size})", fontsize=8, color="dimgrey",
            rotation=90, ha="right", va="bottom")
    ax.text(lo * 1.3, floor_frr * 1.15, f"FRR = 0 observed (< 1/{gen.size})", fontsize=8, color="dimgrey")
    ax.axvspan(lo, 1.0 / imp.size, color="grey", alpha=0.08, label=f"FAR below 1/{imp.size}: not measurable")
    e = r["eer"]
    ax.plot(max(e["far"], floor_far), max(e["frr"], floor_frr), "o", ms=18, mfc="none", mew=2.5, color="tab:red",
            label=f"EER {e['eer']:.2%} at threshold {e['threshold']:.3f}")
    ch = r["chosen"]
    ax.plot(max(ch["far"], floor_far), max(ch["frr"], floor_frr), "*", ms=16, color="tab:green", mec="black",
            label=f"chosen threshold {ch['threshold']:.3f} ({_source(ch)}): FAR {ch['far']:.2%}, FRR {ch['frr']:.2%}")
    for row in r["target_far"]:
        style = dict(color="tab:orange", ls="--", lw=1) if row["supported"] else dict(color="lightgrey", ls="--", lw=1)
        ax.axvline(row["target_far"], **style)
        ax.text(row["target_far"] * 1.08, lo * 3, f"target FAR {row['target_far']:g}"
                + ("" if row["supported"] else " (too few pairs)"),
                rotation=90, fontsize=8, color=style["color"] if row["supported"] else "grey", va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1.05)
    ax.set_ylim(lo, 1.05)
    ax.set_xlabel("False accept rate (FAR): impostor pairs accepted")
    ax.set_ylabel("False reject rate (FRR): genuine pairs rejected")
    ax.set_title(f"DET curve — lower-left is better\n{_model_line(r)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # Below the axes: inside, it would hide part of some curve whatever corner it took.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), fontsize=8.5, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_histogram(ev: Evaluation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, gen, imp = ev.report, ev.scores.genuine, ev.scores.impostor
    lo = min(-0.2, float(imp.min()) - 0.05)
    bins = np.linspace(lo, 1.0, 49)
    fig, ax = plt.subplots(figsize=(8.5, 6), dpi=110)
    # Densities, not counts: impostor pairs outnumber genuine ones by orders of magnitude.
    ax.hist(imp, bins=bins, density=True, alpha=0.55, color="tab:red", label=f"impostor pairs (different people), n={imp.size}")
    ax.hist(gen, bins=bins, density=True, alpha=0.55, color="tab:blue", label=f"genuine pairs (same person), n={gen.size}")
    e, ch = r["eer"], r["chosen"]
    same = ch["source"] == "eer"
    ax.axvline(e["threshold"], color="black", ls="--", lw=1.5,
               label=f"EER threshold {e['threshold']:.3f} (EER {e['eer']:.2%})" + (" = chosen threshold" if same else ""))
    if not same:
        ax.axvline(ch["threshold"], color="tab:green", lw=2,
                   label=f"chosen threshold {ch['threshold']:.3f}: FAR {ch['far']:.2%}, FRR {ch['frr']:.2%}")
    default = r["model"].get("default_threshold")
    if default is not None:
        ax.axvline(default, color="grey", ls=":", lw=1.5, label=f"model pack default {default:.2f}")
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("cosine similarity of the pair (match if ≥ threshold)")
    ax.set_ylabel("density (each histogram has area 1)")
    ax.set_title(f"Similarity of genuine vs impostor pairs\n{_model_line(r)}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8.5, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary_markdown(r: dict) -> str:
    c, e, ch, ident = r["counts"], r["eer"], r["chosen"], r["identification"]
    lines = [
        "# SecureGate evaluation report",
        "",
        f"- Data: `{r['dataset']['dir']}` — {c['identities']} identities, {c['images']} images "
        f"({c['images_used']} used, {c['images_skipped']} skipped), {c['genuine_pairs']} genuine and "
        f"{c['impostor_pairs']} impostor pairs",
        f"- Model: {r['model']['name']} ({r['model']['dim']}-d), detector {r['model']['detector']}, pack default "
        f"threshold {r['model']['default_threshold']}",
        f"- **EER {e['eer']:.2%}** at threshold {e['threshold']:.4f}",
        f"- **Chosen threshold {ch['threshold']:.4f}** ({_source(ch)}"
        + (f"; {ch['why']}" if "why" in ch else "") + f"): FAR {ch['far']:.2%} "
        f"({ch['false_accepts']}/{c['impostor_pairs']}), FRR {ch['frr']:.2%} ({ch['false_rejects']}/{c['genuine_pairs']})",
        "",
        "| target FAR | threshold | measured FAR | FRR | note |",
        "|---|---|---|---|---|",
    ]
    for row in r["target_far"]:
        if row["supported"]:
            lines.append(f"| {row['target_far']:g} | {row['threshold']:.4f} | {row['far']:.2e} | {row['frr']:.2%} | "
                         f"95% upper bound on FAR {row['far_upper_95']:.2e} |")
        else:
            lines.append(f"| {row['target_far']:g} | — | — | — | not measurable: {row['reason']} |")
    top = ", ".join(f"top-{k} {ident[f'top{k}']:.1%}" for k in TOP_KS if ident.get(f"top{k}") is not None)
    lines += ["", f"Identification (gallery {ident['gallery_size']}, probes {ident['probes']}): {top or 'no probes'}"
              + (f" — {ident['note']}" if "note" in ident else "")]
    if "groups" in r:
        g = r["groups"]
        lines += ["", f"Groups at threshold {g['threshold']:.4f} ({g['threshold_source'].replace('_', ' ')}):"]
        for attribute, res in g["attributes"].items():
            for name, info in res["groups"].items():
                flag = " **FLAGGED: FRR > 2x best group**" if info["flagged"] else ""
                lines.append(f"- {attribute}={name}: FRR {info['frr']:.2%} ({info['false_rejects']}/"
                             f"{info['genuine_pairs']}){flag}")
    skipped = r["dataset"]["skipped"]
    lines += ["", f"Skipped images ({len(skipped)}):"] + [
        f"- `{s['path']}`: {s['reason']}" + (f" ({s['faces']} faces)" if s.get("faces") else "") for s in skipped
    ] + ["", "![DET curve](det.png)", "", "![Similarity histograms](histogram.png)", ""]
    return "\n".join(lines)


# ============================================================================= applying the threshold
class ApplyError(RuntimeError):
    """The threshold was not written; the message says why."""


def apply_threshold(url: str, tenant_id: str, threshold: float, admin_token: str, *, model: dict | None = None,
                    timeout: float = 30.0, transport=None) -> dict:
    """Write `threshold` as the tenant's default through the admin API; returns the updated tenant.

    When `model` (pack.describe()) is given, the tenant is read first and the write refused if its vectors
    belong to another recognizer: a threshold measured on one model means nothing for another (e.g. 0.37
    for mobilefacenet vs 0.6 for glintr100)."""
    import httpx

    if not admin_token:
        raise ApplyError("no admin token: pass --admin-token or set SECUREGATE_ADMIN_TOKEN")
    if not (-1.0 <= threshold <= 1.0) or not math.isfinite(threshold):
        raise ApplyError(f"threshold {threshold} is outside the cosine range [-1, 1]")
    headers = {"Authorization": f"Bearer {admin_token}"}
    path = f"/v1/tenants/{tenant_id}"
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport) as client:
        if model is not None:
            got = client.get(path)
            _raise_for(got, "read tenant")
            bound = got.json().get("model") or {}
            if (bound.get("name"), bound.get("dim")) != (model["name"], model["dim"]):
                raise ApplyError(
                    f"tenant {tenant_id} is bound to {bound.get('name')}/{bound.get('dim')} but this evaluation "
                    f"used {model['name']}/{model['dim']}: evaluate with that tenant's model pack (--models)")
        resp = client.patch(path, json={"settings": {"default_threshold": float(threshold)}})
        _raise_for(resp, "update tenant")
        return resp.json()


def _raise_for(resp, what: str) -> None:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("error", {}).get("message") or resp.text
        except ValueError:
            detail = resp.text
        raise ApplyError(f"{what}: HTTP {resp.status_code} from {resp.request.url}: {detail[:300]}")
