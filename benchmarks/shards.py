"""Sharded exact search: one shard actor vs 2 and 4 shard actors over the same faces.

    .venv/bin/python benchmarks/shards.py                 # 2M faces x 512-d (about 4-6 min on 2 cores)
    .venv/bin/python benchmarks/shards.py --faces 200000  # a quick run

Data: identity-clustered synthetic gallery (persons with 2 faces each around a centre drawn uniformly on
the sphere, cosine ~0.8 to it); probes are gallery faces mixed with noise to cosine ~0.7 with their
source. Face ids are uuid4-style hex, assigned to shards by `tenancy.store.shard_of` exactly as a sharded
tenant does. The gallery is generated once into /dev/shm and each shard actor (a Ray actor holding a
`FaceIndex` built from its rows of that in-memory array) keeps only its own faces. Every layout gets the
same BLAS threads per core: each actor's OMP_NUM_THREADS / OPENBLAS_NUM_THREADS is cores // shards (at
least 1), so 1 actor scans with 2 threads on 2 cores and 2 shards with 1 each (Ray's default, without the
env, would be ONE thread for any actor with num_cpus < 2: a 1-actor layout would use half the machine; the
shipped shard actor options set 2, see benchmarks/search_deployed.py). More shards than cores oversubscribe
(4 shards: 4 threads on 2 cores), which the report says. The threads each actor actually runs, as
threadpoolctl sees them (numpy's OpenBLAS, faiss's OpenBLAS and OpenMP), are reported per shard: the SQLite/decryption path is not part of this measurement (at
2M faces it would measure activation, not search). The exact tier throughout (ann_min_faces above n).

Per layout: single-probe queries and batched queries (8 faces per call, as one image of a crowd would be),
scattered from the driver to every shard and merged with `tenancy.index.merge_search` (what TenantService
does); latency p50/p99 and QPS, plus memory per shard. Results are compared across layouts (they must be
identical: same persons, faces and similarities). On a 2-core machine 4 shards cannot beat 2 on a single
probe: the scan is memory-bandwidth and core bound, and 2 cores are all there is. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402

from tenancy.index import FaceIndex, merge_search  # noqa: E402
from tenancy.store import shard_of  # noqa: E402

CHUNK = 131_072


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def generate(directory: Path, n: int, dim: int, seed: int) -> None:
    """vectors.f32 [n, dim] (unit), ids.s32 [n] (hex face ids), persons.i64 [n] into `directory`."""
    vectors = np.lib.format.open_memmap(directory / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    ids = np.lib.format.open_memmap(directory / "ids.npy", mode="w+", dtype="S32", shape=(n,))
    persons = np.lib.format.open_memmap(directory / "persons.npy", mode="w+", dtype=np.int64, shape=(n,))
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        m = stop - start
        first_person = start // 2
        centres = _unit(rng.standard_normal((m // 2 + 1, dim), dtype=np.float32))
        codes = np.arange(m) // 2
        faces = centres[codes] + 0.75 * _unit(rng.standard_normal((m, dim), dtype=np.float32))
        vectors[start:stop] = _unit(faces)
        raw = bytearray(rng.bytes(16 * m))
        raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # uuid4 version nibble, like uuid4().hex
        ids[start:stop] = np.frombuffer(binascii.hexlify(bytes(raw)), dtype="S32")
        persons[start:stop] = first_person + codes
    vectors.flush(), ids.flush(), persons.flush()


def shard_rows(ids: np.ndarray, shards: int) -> np.ndarray:
    """shard of each face id, vectorised: int(face_id[:8], 16) % shards."""
    head = np.array([int(h, 16) for h in ids.astype("S8").tolist()], dtype=np.int64) if len(ids) < 1000 else None
    if head is None:
        hexes = ids.view(np.uint8).reshape(-1, 32)[:, :8].astype(np.int64)
        nibbles = np.where(hexes >= ord("a"), hexes - ord("a") + 10, hexes - ord("0"))
        head = (nibbles * (16 ** np.arange(7, -1, -1, dtype=np.int64))).sum(axis=1)
    return head % shards


@ray.remote(num_cpus=0.5)
class ShardHost:
    """A shard actor as a tenant would have: a FaceIndex over its faces, searched with search_partial."""

    def __init__(self, directory: str, shard: int, shards: int) -> None:
        started = time.perf_counter()
        vectors = np.load(Path(directory) / "vectors.npy", mmap_mode="r")
        ids = np.load(Path(directory) / "ids.npy", mmap_mode="r")
        persons = np.load(Path(directory) / "persons.npy", mmap_mode="r")
        n, dim = vectors.shape
        mine = np.flatnonzero(shard_rows(np.asarray(ids), shards) == shard)
        self.index = FaceIndex(dim, ann_min_faces=n + 1, initial_capacity=max(len(mine), 1))
        for start in range(0, len(mine), CHUNK):
            rows = mine[start : start + CHUNK]
            self.index.add([i.decode() for i in ids[rows].tolist()], [f"p{p}" for p in persons[rows].tolist()], vectors[rows])
        self.build_s = time.perf_counter() - started

    def ready(self) -> dict:
        from threadpoolctl import threadpool_info

        pools = threadpool_info()
        threads = max((p["num_threads"] for p in pools if p.get("internal_api") == "openblas"), default=None)
        seen = {f"{p.get('prefix')}": p["num_threads"] for p in pools}
        rss = 0
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return {"faces": len(self.index), "index_bytes": self.index.memory_bytes(), "rss_bytes": rss,
                "build_s": round(self.build_s, 2), "blas_threads": threads, "threads_seen": seen,
                "omp_env": os.environ.get("OMP_NUM_THREADS"),
                "tier": self.index.tier}

    def search_partial(self, queries: np.ndarray, top_k: int, threshold: float):
        return self.index.search(queries, top_k, threshold)


def run_layout(directory: Path, shards: int, singles: np.ndarray, batches: list[np.ndarray], top_k: int, threshold: float) -> dict:
    threads = str(max(1, (os.cpu_count() or 1) // shards))  # same BLAS threads per core for every layout
    env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    hosts = [ShardHost.options(runtime_env={"env_vars": env}).remote(str(directory), k, shards) for k in range(shards)]
    started = time.perf_counter()
    ready = ray.get([h.ready.remote() for h in hosts])
    load_s = time.perf_counter() - started

    def query(q: np.ndarray):
        return merge_search(ray.get([h.search_partial.remote(q, top_k, threshold) for h in hosts]), top_k)

    query(singles[:1])  # warm-up (page faults, BLAS buffers)
    single_ms, answers = [], []
    t0 = time.perf_counter()
    for q in singles:
        s = time.perf_counter()
        answers += query(q[None])
        single_ms.append((time.perf_counter() - s) * 1000)
    single_wall = time.perf_counter() - t0
    batch_ms, batch_answers = [], []
    t0 = time.perf_counter()
    for b in batches:
        s = time.perf_counter()
        batch_answers += query(b)
        batch_ms.append((time.perf_counter() - s) * 1000)
    batch_wall = time.perf_counter() - t0
    for h in hosts:
        ray.kill(h)
    faces_batched = sum(len(b) for b in batches)
    return {
        "shards": shards, "load_s": round(load_s, 2), "per_shard": ready,
        "single": {"p50_ms": round(float(np.percentile(single_ms, 50)), 2), "p99_ms": round(float(np.percentile(single_ms, 99)), 2),
                   "qps": round(len(singles) / single_wall, 2)},
        "batched": {"p50_ms": round(float(np.percentile(batch_ms, 50)), 2), "p99_ms": round(float(np.percentile(batch_ms, 99)), 2),
                    "calls_per_s": round(len(batches) / batch_wall, 2), "faces_per_s": round(faces_batched / batch_wall, 2)},
        "answers": [[(m.person_id, m.face_id, m.similarity) for m in per] for per in answers],
        "batch_answers": [[(m.person_id, m.face_id, m.similarity) for m in per] for per in batch_answers],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layouts", default="1,2,4")
    parser.add_argument("--probes", type=int, default=30, help="single-probe queries per layout")
    parser.add_argument("--batches", type=int, default=8, help="batched queries per layout")
    parser.add_argument("--batch", type=int, default=8, help="faces per batched query")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args()
    layouts = [int(x) for x in ns.layouts.split(",")]

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    directory = Path("/dev/shm") / f"securegate-shards-bench-{os.getpid()}"
    directory.mkdir()
    try:
        t0 = time.perf_counter()
        generate(directory, ns.faces, ns.dim, ns.seed)
        gen_s = time.perf_counter() - t0
        ids = np.load(directory / "ids.npy", mmap_mode="r")
        sample = [i.decode() for i in ids[:2000].tolist()]
        for n in (2, 3, 4):  # the vectorised assignment is the tenant's own
            assert shard_rows(np.asarray(ids[:2000]), n).tolist() == [shard_of(f, n) for f in sample]
        vectors = np.load(directory / "vectors.npy", mmap_mode="r")
        persons = np.load(directory / "persons.npy", mmap_mode="r")
        rng = np.random.default_rng(ns.seed + 1)
        total = ns.probes + ns.batches * ns.batch
        sources = np.sort(rng.choice(ns.faces, total, replace=False))
        noise = _unit(rng.standard_normal((total, ns.dim), dtype=np.float32))
        probes = _unit(0.7 * np.asarray(vectors[sources]) + 0.714 * noise)
        cosine = float(np.mean(np.einsum("ij,ij->i", probes, np.asarray(vectors[sources]))))
        order = rng.permutation(total)
        probes, sources = probes[order], sources[order]
        singles = probes[: ns.probes]
        batches = [probes[ns.probes + i * ns.batch : ns.probes + (i + 1) * ns.batch] for i in range(ns.batches)]
        print(f"generated {ns.faces} x {ns.dim} in {gen_s:.1f}s; probe cosine to source {cosine:.3f}", flush=True)

        results = {}
        for n in layouts:
            r = results[n] = run_layout(directory, n, singles, batches, ns.top_k, ns.threshold)
            print(f"{n} shard(s): load {r['load_s']}s; single p50 {r['single']['p50_ms']} ms p99 {r['single']['p99_ms']} ms "
                  f"({r['single']['qps']} q/s); batched x{ns.batch} p50 {r['batched']['p50_ms']} ms p99 {r['batched']['p99_ms']} ms "
                  f"({r['batched']['faces_per_s']} faces/s); BLAS threads {[s['blas_threads'] for s in r['per_shard']]}"
                  f" (seen {r['per_shard'][0]['threads_seen']}); load {os.getloadavg()[0]:.1f}; per shard "
                  + ", ".join(f"{s['faces']} faces {s['index_bytes'] / 2**20:.0f} MiB index / {s['rss_bytes'] / 2**20:.0f} MiB RSS"
                              for s in r["per_shard"]), flush=True)
        base = results[layouts[0]]
        identical = all(r["answers"] == base["answers"] and r["batch_answers"] == base["batch_answers"] for r in results.values())
        top1 = [a[0][0] if a else None for a in base["answers"]]
        recall = float(np.mean([t == f"p{persons[s]}" for t, s in zip(top1, sources[: ns.probes])]))
        print(f"identical across layouts: {identical}; top-1 = source person for {recall:.2%} of single probes", flush=True)
        one = results.get(1, base)
        summary = {
            "faces": ns.faces, "dim": ns.dim, "tier": "exact", "top_k": ns.top_k, "threshold": ns.threshold,
            "cores": os.cpu_count(), "blas_threads_per_actor": {str(n): [s["blas_threads"] for s in r["per_shard"]] for n, r in results.items()},
            "threads_seen": {str(n): r["per_shard"][0]["threads_seen"] for n, r in results.items()},
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "p50_ms": {str(n): r["single"]["p50_ms"] for n, r in results.items()},
            "p99_ms": {str(n): r["single"]["p99_ms"] for n, r in results.items()},
            "qps": {str(n): r["single"]["qps"] for n, r in results.items()},
            "batch": ns.batch,
            "batched_p50_ms": {str(n): r["batched"]["p50_ms"] for n, r in results.items()},
            "batched_p99_ms": {str(n): r["batched"]["p99_ms"] for n, r in results.items()},
            "batched_faces_per_s": {str(n): r["batched"]["faces_per_s"] for n, r in results.items()},
            "index_mib_per_shard": {str(n): [round(s["index_bytes"] / 2**20) for s in r["per_shard"]] for n, r in results.items()},
            "rss_mib_per_shard": {str(n): [round(s["rss_bytes"] / 2**20) for s in r["per_shard"]] for n, r in results.items()},
            "identical": identical, "top1_recall": round(recall, 4), "probe_cosine": round(cosine, 3),
        }
        for n in (2, 4):
            if n in results and 1 in results:
                summary[f"speedup_{n}"] = round(results[1]["single"]["p50_ms"] / results[n]["single"]["p50_ms"], 2)
                summary[f"batched_speedup_{n}"] = round(results[1]["batched"]["p50_ms"] / results[n]["batched"]["p50_ms"], 2)
        print(json.dumps(summary))
        return 0 if identical else 1
    finally:
        ray.shutdown()
        for p in directory.iterdir():
            p.unlink()
        directory.rmdir()


if __name__ == "__main__":
    raise SystemExit(main())
