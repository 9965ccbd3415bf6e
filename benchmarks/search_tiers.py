"""The search tier choice on a calibrated gallery: recall@1 per genuine-similarity band and impostor rejection.

    .venv/bin/python benchmarks/search_tiers.py [--faces 100000] [--dim 512] [--hnsw-faces N]

Gallery: `benchmarks/gallery.py` (identities and captures fitted to the genuine/impostor cosines the dev pack
gives on real photos; anisotropic and clustered, not uniform on the sphere): faces/2 persons enrolled with two
captures each. Probes, single, top-10, at the dev pack's threshold (0.37, the model the gallery is calibrated on):
  - genuine: a fresh capture of an enrolled person, quality spread so the probes cover the bands; a probe's
    band is its best cosine to its own person's enrolled faces: 0.35-0.5, 0.5-0.7, > 0.7;
  - impostor: a capture of a person NOT enrolled (same clusters): the right answer is "unknown".
recall@1 (per band): the method's top-1 person is the probe's person (what a user sees; the exact tier's
own value is the ceiling); agree@1: the method's top-1 equals the exact tier's (ANN loss alone); unknown
(impostors): no candidate at or above the threshold. Methods: ours-exact (numpy), faiss-flatip,
ours-ann (PQ fast-scan + exact re-rank, the shipped ANN tier), ours-ann-m{d/8} (the same with the earlier
d/8 sub-quantisers), faiss HNSW-Flat (M=32), IVF-PQ
(IVF1024,PQ{d/8}, nprobe 16 / 64), sqlite-vec vec0 (bench extra; skipped with a note if not installed).
FAISS indexes answer a threshold by their own (approximate for PQ) scores, as a service using them would.
(The exact tier's unknown rate is the data's: with the dev model's impostor spread, some impostor of a 100K
gallery crosses 0.37 for a share of probes; FA+ counts impostors a method accepts where exact says unknown.)
Latency: single-probe p50 in this process; the load average is printed with the results (shared host).
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.gallery import SyntheticGallery, calibrated  # noqa: E402
import tenancy.index.ann as ann_tier  # noqa: E402
from tenancy.index import FaceIndex  # noqa: E402

BANDS = ((0.35, 0.5), (0.5, 0.7), (0.7, 1.01))
THRESHOLD = 0.37  # KNOWN_THRESHOLDS["mobilefacenet_arcface_w128"]: the model the gallery is calibrated on
TOP_K = 10
FACES_PER_PERSON = 2


def band_name(band: tuple[float, float]) -> str:
    return f">{band[0]}" if band[1] > 1 else f"{band[0]}-{band[1]}"


def build_workload(gallery: SyntheticGallery, faces: int, genuine: int, impostors: int, seed: int):
    persons = faces // FACES_PER_PERSON
    centres = gallery.centres(persons + impostors, seed=seed)
    enrolled = np.stack([gallery.captures(centres[:persons], seed=seed + 100 + k) for k in range(FACES_PER_PERSON)], axis=1)
    vectors = enrolled.reshape(-1, gallery.model.dim)
    person_of_row = np.repeat(np.arange(persons), FACES_PER_PERSON)
    rng = np.random.default_rng(seed)
    # Genuine probes: captures at a quality drawn wide enough to fill every band (0.35 .. 0.95 cosine).
    who = rng.choice(persons, genuine * 3, replace=False)
    model = gallery.model
    wide = SyntheticGallery.__new__(SyntheticGallery)
    wide.__dict__.update(gallery.__dict__)
    wide.model = type(model)(**{**model.__dict__, "quality_log_mean": np.log(0.62), "quality_log_std": 0.3})
    probes = wide.captures(centres[who], seed=seed + 7)
    best = np.einsum("pkd,pd->pk", enrolled[who], probes).max(axis=1)
    keep = []
    for lo, hi in BANDS:  # equal numbers per band, so each band's recall has the same resolution
        in_band = np.flatnonzero((best >= lo) & (best < hi))
        keep.extend(in_band[: genuine // len(BANDS)].tolist())
    keep = np.array(keep)
    impostor_probes = gallery.captures(centres[persons:], seed=seed + 9)
    return vectors, person_of_row, probes[keep], who[keep], best[keep], impostor_probes


def time_search(search: Callable[[np.ndarray], tuple[int, float]], probes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """search(probe) -> (row of the top-1 face or -1, its score); returns rows, scores, latencies (s)."""
    search(probes[0])
    rows, scores, lat = [], [], []
    for p in probes:
        t = time.perf_counter()
        row, score = search(p)
        lat.append(time.perf_counter() - t)
        rows.append(row)
        scores.append(score)
    return np.array(rows), np.array(scores), np.array(lat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--genuine", type=int, default=300, help="genuine probes (split equally over the bands)")
    parser.add_argument("--impostors", type=int, default=200)
    parser.add_argument("--sqlite-probes", type=int, default=60)
    parser.add_argument("--skip", default="", help="comma-separated methods to skip: flat, hnsw, ivfpq, sqlite-vec")
    args = parser.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    skip = set(filter(None, args.skip.split(",")))
    began = time.perf_counter()
    calibration, gallery = calibrated(args.dim)
    vectors, person_of_row, probes, probe_person, probe_best, impostors = build_workload(
        gallery, args.faces, args.genuine, args.impostors, seed=11)
    n, d = vectors.shape
    everything = np.concatenate([probes, impostors])
    print(f"gallery {n} x {d} (calibrated: {calibration.source}); genuine probes per band "
          + ", ".join(f"{band_name(b)}: {int(((probe_best >= b[0]) & (probe_best < b[1])).sum())}" for b in BANDS)
          + f"; impostors {len(impostors)}; built in {time.perf_counter() - began:.0f} s; load {os.getloadavg()[0]:.1f}", flush=True)
    face_ids = [f"{i:032x}" for i in range(n)]
    row_of_id = {f: i for i, f in enumerate(face_ids)}
    person_ids = [f"p{p}" for p in person_of_row]

    methods: dict[str, dict] = {}
    notes: list[str] = []

    def record(name: str, build_s: float, search, count: int | None = None) -> None:
        sample = everything if count is None else np.concatenate([probes[:: max(1, len(probes) // count)], impostors[: count // 2]])
        rows, scores, lat = time_search(search, sample)
        methods[name] = {"build_s": round(build_s, 2), "p50_ms": round(float(np.median(lat)) * 1e3, 3),
                         "rows": rows, "scores": scores, "probes": len(sample), "subsampled": count is not None,
                         "load": round(os.getloadavg()[0], 1)}
        print(f"  {name:<16} build {build_s:7.1f} s   p50 {methods[name]['p50_ms']:8.2f} ms   load {methods[name]['load']}", flush=True)
        gc.collect()

    shipped_subquantizers = ann_tier.pq_subquantizers
    for name, ann_min in (("ours-exact", n + 1), ("ours-ann", 0), (f"ours-ann-m{d // 8}", 0)):
        # The last builds the ANN tier with the earlier d/8 sub-quantisers, for the comparison only.
        ann_tier.pq_subquantizers = (lambda dim: dim // 8) if name.startswith("ours-ann-m") else shipped_subquantizers
        t = time.perf_counter()
        index = FaceIndex.build(face_ids, person_ids, vectors, ann_min_faces=ann_min, use_gpu=False)
        build_s = time.perf_counter() - t
        ann_tier.pq_subquantizers = shipped_subquantizers

        def ours(p, index=index):
            found = index.search(p[None], TOP_K, THRESHOLD)[0]
            return (row_of_id[found[0].face_id], found[0].similarity) if found else (-1, -1.0)

        record(name, build_s, ours)
        del index

    def faiss_method(name: str, index, prepare=None) -> None:
        t = time.perf_counter()
        if not index.is_trained:
            index.train(vectors if n <= 65_536 else vectors[np.random.default_rng(0).choice(n, 65_536, replace=False)])
        index.add(vectors)
        build_s = time.perf_counter() - t
        for label, setting in (prepare or {None: None}).items():
            if setting is not None:
                setting(index)

            def search(p, index=index):
                scores, rows = index.search(p[None], TOP_K)
                ok = scores[0] >= THRESHOLD
                return (int(rows[0][0]), float(scores[0][0])) if ok[0] and rows[0][0] >= 0 else (-1, float(scores[0][0]))

            record(name if label is None else f"{name}-{label}", build_s, search)

    if "flat" not in skip:
        faiss_method("faiss-flatip", faiss.IndexFlatIP(d))
    if "hnsw" not in skip:
        hnsw = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 40
        faiss_method("hnsw32", hnsw, {f"ef{ef}": (lambda i, ef=ef: setattr(i.hnsw, "efSearch", ef)) for ef in (64, 256)})
    if "ivfpq" not in skip:
        ivf = faiss.index_factory(d, f"IVF1024,PQ{d // 8}", faiss.METRIC_INNER_PRODUCT)
        faiss_method("ivfpq", ivf, {f"np{p}": (lambda i, p=p: setattr(i, "nprobe", p)) for p in (16, 64)})

    try:
        import apsw
        import sqlite_vec
    except ImportError as exc:
        notes.append(f"sqlite-vec skipped: {exc} (install the bench extra: pip install -e .[bench])")
        sqlite_vec = None
    if sqlite_vec is not None and "sqlite-vec" not in skip:
        conn = apsw.Connection(":memory:")
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.execute(f"CREATE VIRTUAL TABLE g USING vec0(embedding float[{d}] distance_metric=cosine)")
        t = time.perf_counter()
        with conn:
            conn.executemany("INSERT INTO g (rowid, embedding) VALUES (?, ?)", ((r, vectors[r].tobytes()) for r in range(n)))
        build_s = time.perf_counter() - t
        query = "SELECT rowid, distance FROM g WHERE embedding MATCH ? AND k = ? ORDER BY distance"

        def vec0(p):
            row, distance = conn.execute(query, (p.tobytes(), TOP_K)).fetchone()
            return (int(row), 1 - distance) if 1 - distance >= THRESHOLD else (-1, 1 - distance)

        record("sqlite-vec", build_s, vec0, count=args.sqlite_probes)
        conn.close()

    # -- grading
    exact = methods["ours-exact"]
    print(f"\nrecall@1 = top-1 is the probe's person (threshold {THRESHOLD}); agree@1 = same top-1 as ours-exact;"
          f" unknown = impostor probes answered 'unknown' (the exact tier's rate is the data's own: impostors of a"
          f" large gallery do cross the threshold); FA+ = impostors accepted where the exact tier answers unknown")
    header = f"{'method':<18}{'p50 ms':>9}{'build s':>9}" + "".join(f"{'rec ' + band_name(b):>12}{'agree':>7}" for b in BANDS) + f"{'unknown':>9}{'FA+':>7}"
    print(header)
    print("-" * len(header))
    summary_methods = {}
    g = len(probes)
    for name, m in methods.items():
        if m["subsampled"]:
            idx = np.arange(0, g, max(1, g // args.sqlite_probes))
            genuine_idx = idx
            imp_rows = m["rows"][len(idx):]
            gen_rows = m["rows"][: len(idx)]
        else:
            genuine_idx = np.arange(g)
            gen_rows, imp_rows = m["rows"][:g], m["rows"][g:]
        exact_rows = exact["rows"][genuine_idx]
        line = f"{name:<18}{m['p50_ms']:>9.2f}{m['build_s']:>9.1f}"
        entry = {"p50_ms": m["p50_ms"], "build_s": m["build_s"], "load": m["load"], "probes": m["probes"]}
        for b in BANDS:
            sel = (probe_best[genuine_idx] >= b[0]) & (probe_best[genuine_idx] < b[1])
            got = gen_rows[sel]
            hit = np.where(got >= 0, person_of_row[np.maximum(got, 0)] == probe_person[genuine_idx][sel], False)
            agree = got == exact_rows[sel]
            rec, agr = float(hit.mean()) if sel.any() else float("nan"), float(agree.mean()) if sel.any() else float("nan")
            line += f"{rec:>12.3f}{agr:>7.3f}"
            entry[f"recall_{band_name(b)}"] = round(rec, 4)
            entry[f"agree_{band_name(b)}"] = round(agr, 4)
        unknown = float((imp_rows < 0).mean())
        exact_unknown = exact["rows"][g:][: len(imp_rows)] < 0 if not m["subsampled"] else exact["rows"][g:][: len(imp_rows)] < 0
        false_accepts = int(((imp_rows >= 0) & exact_unknown).sum())  # above threshold where the exact tier says unknown
        entry["impostor_unknown"] = round(unknown, 4)
        entry["impostor_false_accepts_vs_exact"] = false_accepts
        line += f"{unknown:>9.3f}{false_accepts:>7d}"
        print(line)
        summary_methods[name] = entry
    for note in notes:
        print(note)
    ann, ex = summary_methods["ours-ann"], summary_methods["ours-exact"]
    print(json.dumps({
        "benchmark": "search_tiers", "faces": n, "dim": d, "threshold": THRESHOLD, "gallery": calibration.source,
        "ann_speedup_vs_exact": round(ex["p50_ms"] / ann["p50_ms"], 2),
        "ann_agree_min": min(ann[f"agree_{band_name(b)}"] for b in BANDS),
        "methods": summary_methods, "notes": notes, "load_avg_1m": round(os.getloadavg()[0], 1),
        "elapsed_s": round(time.perf_counter() - began, 1),
    }))


if __name__ == "__main__":
    main()
