"""What "not this person" rejections cost a search (tenancy/index/): FaceIndex.search on one gallery with no
rejections, with rejections, and (optionally) the FaceIndex of another git revision as the baseline.

    .venv/bin/python benchmarks/rejections.py                         # 10K x 512, 200 probes
    .venv/bin/python benchmarks/rejections.py --baseline 3cc4694      # + the index before rejections existed

Gallery: uniform unit vectors, 5 faces a person; probes at cosine 0.7 to a gallery face; single-probe queries,
top-10, threshold 0.3 (as benchmarks/search.py). "with rejections": `--rejections` negative examples spread over
as many persons, each a noisy copy of another person's face (so some do veto). The variants take turns over
`--rounds` slices of the probes, so load from elsewhere falls on all alike. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.revisions import module_at  # noqa: E402
from tenancy.index import FaceIndex  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def index_at(revision: str):
    """The FaceIndex class of tenancy/index.py at a git revision (one from before tenancy/index/ was split into a
    package, where rejections were first measured)."""
    return module_at(revision, "tenancy/index.py", "index_baseline").FaceIndex


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--rejections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="git revision whose FaceIndex is timed too (before rejections existed)")
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    vectors = unit(rng.standard_normal((args.faces, args.dim), dtype=np.float32))
    face_ids = [f"{i:032x}" for i in range(args.faces)]
    person_ids = [f"p{i // 5}" for i in range(args.faces)]
    sources = rng.choice(args.faces, args.probes, replace=False)
    noise = unit(rng.standard_normal((args.probes, args.dim), dtype=np.float32))
    probes = unit(0.7 * vectors[sources] + np.sqrt(1 - 0.49) * noise)

    variants = {"no_rejections": FaceIndex.build(face_ids, person_ids, vectors, ann_min_faces=10**9, use_gpu=False)}
    rejected = FaceIndex.build(face_ids, person_ids, vectors, ann_min_faces=10**9, use_gpu=False)
    owners = rng.choice(args.faces // 5, args.rejections, replace=False)
    others = rng.choice(args.faces, args.rejections, replace=False)
    rejected.add_rejections([f"r{i}" for i in range(args.rejections)], [f"p{o}" for o in owners],
                            unit(vectors[others] + 0.3 * unit(rng.standard_normal((args.rejections, args.dim), dtype=np.float32))))
    variants[f"{args.rejections}_rejections"] = rejected
    if args.baseline:
        variants[f"baseline_{args.baseline}"] = index_at(args.baseline).build(face_ids, person_ids, vectors,
                                                                               ann_min_faces=10**9, use_gpu=False)
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for name, index in variants.items():  # warm-up
        index.search(probes[:5], 10, 0.3)
    for chunk in np.array_split(np.arange(args.probes), args.rounds):
        for name, index in variants.items():
            for i in chunk:
                started = time.perf_counter()
                index.search(probes[i : i + 1], 10, 0.3)
                timings[name].append(time.perf_counter() - started)
    summary = {}
    for name, times in timings.items():
        ms = np.asarray(times) * 1000
        summary[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
                         "mean_ms": round(float(ms.mean()), 4)}
        print(f"{name:>22}: p50 {summary[name]['p50_ms']:.3f} ms  p90 {summary[name]['p90_ms']:.3f} ms  "
              f"mean {summary[name]['mean_ms']:.3f} ms")
    print(json.dumps({"faces": args.faces, "dim": args.dim, "probes": args.probes, "rejections": args.rejections,
                      "results": summary}))


if __name__ == "__main__":
    main()
