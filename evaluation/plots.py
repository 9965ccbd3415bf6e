"""The report's pictures: DET curve and genuine/impostor similarity histograms (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from evaluation.metrics import far_frr  # noqa: E402
from evaluation.report import Evaluation, model_line, threshold_source  # noqa: E402


def plot_det(ev: Evaluation, path: Path) -> None:
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
            label=f"chosen threshold {ch['threshold']:.3f} ({threshold_source(ch)}): FAR {ch['far']:.2%}, FRR {ch['frr']:.2%}")
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
    ax.set_title(f"DET curve — lower-left is better\n{model_line(r)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # Below the axes: inside, it would hide part of some curve whatever corner it took.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), fontsize=8.5, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_histogram(ev: Evaluation, path: Path) -> None:
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
    ax.set_title(f"Similarity of genuine vs impostor pairs\n{model_line(r)}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8.5, ncol=2)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
