"""Search benchmark: our exact and ANN tiers against FAISS IndexFlatIP, sqlite-vec vec0 and plain numpy.

Workload: gallery vectors uniform on the unit sphere (one person per face); probes are gallery vectors
mixed with orthogonal noise to cosine 0.7 with their source (a same-identity capture). Single-probe
queries, top-10, threshold 0.3 for our tiers. Recall@1 is measured against the exact top-1.
Also measures activation: TenantStore.load_all (decrypt) + FaceIndex.build from an encrypted DB.

    .venv/bin/python benchmarks/search.py [--quick]     # needs the [bench] extra (sqlite-vec): make bench

Measured in this process with every core; the deployed tier runs in a shard actor: benchmarks/search_deployed.py.
Recall here is graded on vectors uniform on the sphere, which faces are not: the tier choice is graded on a
gallery calibrated on real photos, per genuine-similarity band, in benchmarks/search_tiers.py.

Prints a table and, last, one JSON line with the headline numbers.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw
import faiss
import numpy as np
import sqlite_vec

from kms import DataKey
from kms.records import RecordCipher
from tenancy.index import FaceIndex
from tenancy.personal import PersonKeys
from tenancy.store import TenantStore

PROBE_COSINE = 0.7
TOP_K = 10
THRESHOLD = 0.3
PROBES = 200
SLOW_BASELINE_PROBES = 50  # sqlite-vec at 1M is ~1 s per probe
FACES_PER_STORED_PERSON = 4


@dataclass
class Result:
    method: str
    n: int
    dim: int
    p50_ms: float
    p99_ms: float
    qps: float
    recall_at_1: float
    bytes_per_face: float
    build_s: float


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # chunked: keeps float32 temporaries small at 1M
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_probes(rng: np.random.Generator, gallery: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    sources = rng.choice(len(gallery), count, replace=False)
    anchor = gallery[sources]
    noise = unit_rows(rng, count, gallery.shape[1])
    noise -= (noise * anchor).sum(axis=1, keepdims=True) * anchor  # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    probes = PROBE_COSINE * anchor + np.sqrt(1 - PROBE_COSINE**2) * noise
    return probes.astype(np.float32), sources


def time_probes(search_top1: Callable[[np.ndarray], int], probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    search_top1(probes[0])  # warm-up (page faults, lazy init)
    latencies, top1 = [], []
    for probe in probes:
        start = time.perf_counter()
        top1.append(search_top1(probe))
        latencies.append(time.perf_counter() - start)
    return np.array(latencies), np.array(top1)


def summarise(method: str, gallery: np.ndarray, latencies: np.ndarray, top1: np.ndarray, truth: np.ndarray,
              bytes_per_face: float, build_s: float) -> Result:
    return Result(
        method, len(gallery), gallery.shape[1],
        float(np.percentile(latencies, 50) * 1e3), float(np.percentile(latencies, 99) * 1e3),
        float(1 / latencies.mean()), float((top1 == truth[: len(top1)]).mean()), bytes_per_face, build_s,
    )


def bench_size(n: int, dim: int, seed: int) -> list[Result]:
    rng = np.random.default_rng(seed)
    gallery = unit_rows(rng, n, dim)
    probes, _ = make_probes(rng, gallery, PROBES)
    ids = [f"{i:032x}" for i in range(n)]
    row_of_id = {face_id: row for row, face_id in enumerate(ids)}
    truth = np.array([int(np.argmax(gallery @ p)) for p in probes])
    results = []

    for method, ann_min_faces in (("ours-exact", n + 1), ("ours-ann", 0)):
        start = time.perf_counter()
        index = FaceIndex.build(ids, ids, gallery, ann_min_faces=ann_min_faces, use_gpu=False)
        build_s = time.perf_counter() - start
        assert index.tier == method.removeprefix("ours-")
        lat, top1 = time_probes(lambda p: row_of_id[index.search(p[None], TOP_K, THRESHOLD)[0][0].face_id], probes)
        results.append(summarise(method, gallery, lat, top1, truth, index.memory_bytes() / n, build_s))
        del index
        gc.collect()

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(gallery)
    build_s = time.perf_counter() - start
    lat, top1 = time_probes(lambda p: int(flat.search(p[None], TOP_K)[1][0, 0]), probes)
    results.append(summarise("faiss-flatip", gallery, lat, top1, truth, 4 * dim, build_s))
    del flat

    def numpy_top1(probe: np.ndarray) -> int:
        scores = gallery @ probe
        top = np.argpartition(scores, -TOP_K)[-TOP_K:]
        return int(top[np.argmax(scores[top])])

    lat, top1 = time_probes(numpy_top1, probes)
    results.append(summarise("numpy", gallery, lat, top1, truth, 4 * dim, 0.0))

    conn = apsw.Connection(":memory:")
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    conn.execute(f"CREATE VIRTUAL TABLE gallery USING vec0(embedding float[{dim}] distance_metric=cosine)")
    start = time.perf_counter()
    with conn:
        conn.executemany(
            "INSERT INTO gallery (rowid, embedding) VALUES (?, ?)",
            ((row, gallery[row].tobytes()) for row in range(n)),
        )
    build_s = time.perf_counter() - start
    db_bytes = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
    vec_probes = probes[: PROBES if n <= 200_000 else SLOW_BASELINE_PROBES]
    query = "SELECT rowid FROM gallery WHERE embedding MATCH ? AND k = ? ORDER BY distance"
    lat, top1 = time_probes(lambda p: conn.execute(query, (p.tobytes(), TOP_K)).fetchone()[0], vec_probes)
    results.append(summarise("sqlite-vec", gallery, lat, top1, truth, db_bytes / n, build_s))
    conn.close()
    return results


def bench_activation(n: int, dim: int, workdir: Path, seed: int) -> tuple[float, float, float]:
    """Returns (load_all seconds, build seconds, DB generation seconds) for n encrypted faces."""
    rng = np.random.default_rng(seed)
    cipher = RecordCipher(os.urandom(32), 1)
    person_key = os.urandom(32)
    person_keys = PersonKeys(lambda version, purpose: DataKey("bench-tenant", purpose, 1, person_key))
    path = workdir / f"activation-{n}-{dim}" / "embeddings.db"
    start = time.perf_counter()
    with TenantStore.open(path, "bench-tenant", "synthetic", dim) as store:
        chunk = 20_000
        for first in range(0, n, chunk):
            vectors = unit_rows(rng, min(chunk, n - first), dim)
            ones = [1.0] * FACES_PER_STORED_PERSON
            with store.transaction():  # bulk: one durable commit per chunk instead of per face
                for offset in range(0, len(vectors), FACES_PER_STORED_PERSON):
                    person = store.create_person(None, {}, keys=person_keys)
                    store.add_faces(person.person_id, vectors[offset : offset + FACES_PER_STORED_PERSON], cipher, ones, ones)
        store.checkpoint()
    generate_s = time.perf_counter() - start
    gc.collect()
    with TenantStore.open(path, "bench-tenant", "synthetic", dim) as store:
        start = time.perf_counter()
        loaded = store.load_all(lambda version: cipher)
        load_s = time.perf_counter() - start
    start = time.perf_counter()
    index = FaceIndex.build(loaded.face_ids, loaded.person_ids, loaded.vectors)
    build_s = time.perf_counter() - start
    assert len(index) == n
    return load_s, build_s, generate_s


def print_table(results: list[Result]) -> None:
    header = f"{'method':<13}{'n':>9}{'dim':>5}{'p50 ms':>10}{'p99 ms':>10}{'QPS':>9}{'recall@1':>10}{'B/face':>9}{'build s':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.method:<13}{r.n:>9}{r.dim:>5}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.qps:>9.1f}"
              f"{r.recall_at_1:>10.3f}{r.bytes_per_face:>9.0f}{r.build_s:>9.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10K and 50K faces instead of 100K and 1M")
    args = parser.parse_args()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    small, large = (10_000, 50_000) if args.quick else (100_000, 1_000_000)
    began = time.perf_counter()

    results: list[Result] = []
    for n in (small, large):
        for dim in (128, 512):
            print(f"== {n} faces x {dim} dims", flush=True)
            size_results = bench_size(n, dim, seed=n + dim)
            print_table(size_results)
            results.extend(size_results)
            gc.collect()
    print()
    print_table(results)

    activation: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            load_s, build_s, generate_s = bench_activation(n, 512, Path(tmp), seed=n)
            activation[n] = load_s + build_s
            print(f"activation {n:>9} x 512: load_all (decrypt) {load_s:.2f} s + build {build_s:.2f} s"
                  f" = {activation[n]:.2f} s   (DB generation {generate_s:.1f} s)", flush=True)
            gc.collect()

    def find(method: str, n: int, dim: int) -> Result:
        return next(r for r in results if (r.method, r.n, r.dim) == (method, n, dim))

    baselines = [find(m, large, 512) for m in ("faiss-flatip", "numpy", "sqlite-vec")]
    fastest = min(baselines, key=lambda r: r.p50_ms)
    exact, ann = find("ours-exact", large, 512), find("ours-ann", large, 512)
    print(f"total benchmark time {time.perf_counter() - began:.0f} s; fastest baseline at {large}x512: {fastest.method}")
    print(json.dumps({
        "large_n": large,
        "exact_vs_fastest_baseline": round(fastest.p50_ms / exact.p50_ms, 3),
        "fastest_baseline": fastest.method,
        "ann_recall_at_1_1m": ann.recall_at_1,
        "ann_speedup_vs_exact_1m": round(exact.p50_ms / ann.p50_ms, 2),
        "exact_p50_ms_1m_512": round(exact.p50_ms, 2),
        "ann_p50_ms_1m_512": round(ann.p50_ms, 3),
        "activate_100k_s": round(activation[small], 3),
        "activate_1m_s": round(activation[large], 3),
    }))


if __name__ == "__main__":
    main()
