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
    pair_scores,
    threshold_at_far,
)

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
    skipped = r["dataset"]["skipped"]
    lines += ["", f"Skipped images ({len(skipped)}):"] + [
        f"- `{s['path']}`: {s['reason']}" + (f" ({s['faces']} faces)" if s.get("faces") else "") for s in skipped
    ] + ["", "![DET curve](det.png)", "", "![Similarity histograms](histogram.png)", ""]
    return "\n".join(lines)
