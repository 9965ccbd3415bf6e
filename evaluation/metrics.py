"""Metric maths of `securegate eval`: small, pure, vectorised functions (numpy arrays in, numbers out), tested
on hand-made scores with known answers.

Conventions, matching the service (`similarity >= threshold` is a match):
  FAR(t) = share of impostor pairs (two different people) with similarity >= t  (false accepts)
  FRR(t) = share of genuine pairs (same person)            with similarity <  t  (false rejects)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy.stats import beta

TOP_KS = (1, 3, 5)
GROUP_FLAG_RATIO = 2.0
_BLOCK = 2048  # rows of the similarity matrix computed at once: bounds memory at ~BLOCK*N floats


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


def pair_minimum(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the smaller of its two images' `values` (e.g. a quality band: a pair is as good as its worse
    face), as (genuine, impostor) in the order `pair_scores` gives the pairs."""
    values = np.asarray(values)
    labels = np.asarray(labels)
    n = len(labels)
    genuine, impostor = [], []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(start, n)[None, :] > rows
        same = labels[start:stop, None] == labels[None, start:]
        lower = np.minimum(values[start:stop, None], values[None, start:])
        genuine.append(lower[upper & same])
        impostor.append(lower[upper & ~same])
    if not genuine:
        return values[:0], values[:0]
    return np.concatenate(genuine), np.concatenate(impostor)


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
    if pairs <= 0 or false_accepts >= pairs:
        return 1.0
    return float(beta.ppf(confidence, false_accepts + 1, pairs - false_accepts))
