"""The evaluation result: every number of report.json that follows from the scores (no models needed),
and its Markdown summary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from evaluation.metrics import (
    TOP_KS,
    PairScores,
    eer,
    far_frr,
    far_upper_bound,
    group_frr,
    identification_accuracy,
    pair_minimum,
    pair_scores,
    threshold_at_far,
)

from vision.quality import QUALITY_BANDS, band

TARGET_FARS = (1e-2, 1e-3, 1e-4)
GRID = np.round(np.arange(0.0, 1.0001, 0.05), 2)  # thresholds reported in the table; cosine in [-1, 1]


@dataclass
class Evaluation:
    report: dict
    scores: PairScores
    embeddings: np.ndarray
    labels: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def build_report(scores: PairScores, embeddings: np.ndarray, labels: np.ndarray, paths: Sequence[str], *,
                 target_far: float, group_map: dict[str, dict[str, str]] | None = None,
                 quality: np.ndarray | None = None) -> dict:
    """Every number of report.json that follows from the scores (no models needed); `quality` (one
    vision.quality FaceQuality.score per image) adds FAR/FRR per quality band."""
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
    if quality is not None:
        report["quality_bands"] = _quality_bands(scores, labels, np.asarray(quality, np.float64), chosen)
    return report


def _quality_bands(scores: PairScores, labels: np.ndarray, quality: np.ndarray, chosen: dict) -> dict:
    """FAR/FRR at the chosen threshold per quality band, a pair being in the band of its worse face: whether
    one threshold serves good and poor faces alike (a lower bar for poor faces is how wrong names happen)."""
    t = float(chosen["threshold"])
    bands = np.array([band(q) for q in quality])
    gen_band, imp_band = pair_minimum(bands, labels)
    out = {"threshold": t, "score": "vision.quality FaceQuality.score", "bands": {}}
    for i, (name, lowest) in enumerate(QUALITY_BANDS):
        gen, imp = scores.genuine[gen_band == i], scores.impostor[imp_band == i]
        far, frr = far_frr(gen, imp, [t])
        out["bands"][name] = {
            "lowest_score": lowest, "images": int(np.sum(bands == i)), "genuine_pairs": int(gen.size),
            "impostor_pairs": int(imp.size), "far": float(far[0]) if imp.size else None,
            "frr": float(frr[0]) if gen.size else None, "genuine_min": float(gen.min()) if gen.size else None,
            "impostor_max": float(imp.max()) if imp.size else None,
            "far_upper_95": far_upper_bound(int(round(far[0] * imp.size)), imp.size) if imp.size else None}
    return out


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


def jsonable(value):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def model_line(r: dict) -> str:
    m, c = r["model"], r["counts"]
    return (f"{m['name']} ({m['dim']}-d) + {m['detector']}\n{c['identities']} identities, {c['images_used']}/"
            f"{c['images']} images used, {c['genuine_pairs']} genuine / {c['impostor_pairs']} impostor pairs")


def threshold_source(chosen: dict) -> str:
    return f"target FAR {chosen['target_far']:g}" if chosen["source"] == "target_far" else "EER"




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
        f"- **Chosen threshold {ch['threshold']:.4f}** ({threshold_source(ch)}"
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
    if "quality_bands" in r:
        q = r["quality_bands"]
        lines += ["", f"Quality bands at threshold {q['threshold']:.4f} (a pair is in the band of its worse face):", "",
                  "| band | images | genuine pairs | FRR | impostor pairs | FAR | worst impostor |", "|---|---|---|---|---|---|---|"]
        pct = lambda v: "—" if v is None else f"{v:.2%}"  # noqa: E731
        for name, b in q["bands"].items():
            worst = "—" if b["impostor_max"] is None else f"{b['impostor_max']:.3f}"
            lines.append(f"| {name} (score ≥ {b['lowest_score']}) | {b['images']} | {b['genuine_pairs']} | {pct(b['frr'])} | "
                         f"{b['impostor_pairs']} | {pct(b['far'])} | {worst} |")
    skipped = r["dataset"]["skipped"]
    lines += ["", f"Skipped images ({len(skipped)}):"] + [
        f"- `{s['path']}`: {s['reason']}" + (f" ({s['faces']} faces)" if s.get("faces") else "") for s in skipped
    ] + ["", "![DET curve](det.png)", "", "![Similarity histograms](histogram.png)", ""]
    return "\n".join(lines)
