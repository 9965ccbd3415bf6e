"""Search as deployed: the exact tier inside a tenant shard actor created the way the shipped config creates it.

    .venv/bin/python benchmarks/search_deployed.py                      # 200K x 512, configs/local.yaml (~2-3 min on 2 cores)
    .venv/bin/python benchmarks/search_deployed.py --faces 1000000 --config configs/cluster.yaml

The shard actor is the real `TenantShardActor`, created with the config's `tenancy.shard_actor_options`
(read through `Settings`, passed to `.options(...)` exactly as `TenantService._spawn` does: resources AND the
runtime_env that sets its BLAS/OpenMP threads). Ray sets OMP_NUM_THREADS from `num_cpus` in any worker that
does not set it, so a 0.05-CPU actor without the thread env runs BLAS on one thread. The actor's FaceIndex is
built inside the actor from the same seeded gallery the driver builds (activation, i.e. decrypting the
SQLite store, is not search: benchmarks/search.py measures it); the exact tier is forced (ann_min_faces above
n, as the shipped 200K default would otherwise switch a 200K tenant to the ANN tier).

Compared in one run, same gallery and probes (uniform on the sphere, probes at cosine 0.7 to a source face,
single-probe queries, top-10, threshold 0.3, as benchmarks/search.py):
  driver        FaceIndex.search in this process, every core (what benchmarks/search.py measures);
  actor         FaceIndex.search timed inside the actor created as the config does (the deployed tier);
  actor-ray-default   the same actor options without the runtime_env: Ray's thread default for its num_cpus;
and, for the actor as shipped, the round trip of TenantShard.search through Ray (what TenantService awaits).
The three take turns over `--rounds` slices of the probes, so load from elsewhere on the machine falls on all of
them alike. Each reports the threads threadpoolctl sees in that process. Ratios are actor / driver. Ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ray  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

from cli.serve import load_serve_config  # noqa: E402
from securegate.settings import Settings  # noqa: E402
from tenancy.actors import NAMESPACE, TenantShardActor, actor_name  # noqa: E402
from tenancy.index import FaceIndex  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROBE_COSINE = 0.7
TOP_K = 10
THRESHOLD = 0.3


def gallery_and_probes(n: int, dim: int, probes: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Deterministic in (n, dim, probes, seed): the driver and the actor build the same arrays."""
    rng = np.random.default_rng(seed)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65_536):
        block = rng.standard_normal((min(65_536, n - start), dim), dtype=np.float32)
        vectors[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    anchor = vectors[rng.choice(n, probes, replace=False)]
    noise = rng.standard_normal((probes, dim), dtype=np.float32)
    noise -= (noise * anchor).sum(axis=1, keepdims=True) * anchor
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = (PROBE_COSINE * anchor + np.sqrt(1 - PROBE_COSINE**2) * noise).astype(np.float32)
    return [f"{i:032x}" for i in range(n)], vectors, queries


def threads_seen() -> dict:
    """BLAS/OpenMP thread pools loaded in this process (threadpoolctl) and the env that set them."""
    pools = [{"api": p["internal_api"], "threads": p["num_threads"], "library": Path(p["filepath"]).name}
             for p in threadpool_info()]
    return {"pools": pools, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}


def time_search(index: FaceIndex, queries: np.ndarray) -> dict:
    """FaceIndex.search per probe, timed where the index lives: latencies (s) and top-1 face ids."""
    index.search(queries[:1], TOP_K, THRESHOLD)  # warm-up: page faults, thread start-up
    latencies, top1 = [], []
    for query in queries:
        started = time.perf_counter()
        matches = index.search(query[None], TOP_K, THRESHOLD)[0]
        latencies.append(time.perf_counter() - started)
        top1.append(matches[0].face_id if matches else None)
    return {"latencies": latencies, "top1": top1}


def build_inside(actor_state, n: int, dim: int, probes: int, seed: int) -> dict:
    """Runs in the shard actor (via __ray_call__): its FaceIndex over the seeded gallery, exact tier."""
    face_ids, vectors, _ = gallery_and_probes(n, dim, probes, seed)
    actor_state.index = FaceIndex.build(face_ids, face_ids, vectors, ann_min_faces=n + 1, use_gpu=False)
    actor_state.external_ids = {}
    assert actor_state.index.tier == "exact"
    return {"faces": len(actor_state.index), "pid": os.getpid()}


def search_inside(actor_state, queries: np.ndarray) -> dict:
    return {**time_search(actor_state.index, queries), "threads": threads_seen()}


def round_trip(actor, queries: np.ndarray) -> dict:
    """TenantShard.search through Ray, as TenantService awaits it (serialisation and scheduling included)."""
    ray.get(actor.search.remote(queries[:1], TOP_K, THRESHOLD))
    latencies = []
    for query in queries:
        started = time.perf_counter()
        ray.get(actor.search.remote(query[None], TOP_K, THRESHOLD))
        latencies.append(time.perf_counter() - started)
    return {"latencies": latencies}


def start_actor(label: str, options: dict, ns: argparse.Namespace):
    """A TenantShardActor created as TenantService._spawn creates it, holding the benchmark's gallery."""
    actor = TenantShardActor.options(name=actor_name(f"bench-{label}"), namespace=NAMESPACE, get_if_exists=True,
                                     **options).remote(f"bench-{label}", "/nonexistent", "synthetic", ns.dim, None, None)
    ray.get(actor.__ray_call__.remote(build_inside, ns.faces, ns.dim, ns.probes, ns.seed))
    return actor


class Placement:
    """Latencies gathered over interleaved rounds (machine load drifts alike for every placement)."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.round_trips: list[float] = []
        self.top1: list[str | None] = []
        self.threads: dict = {}

    def record(self, measured: dict) -> None:
        self.latencies += measured["latencies"]
        self.top1 += measured["top1"]
        self.threads = measured["threads"]

    def p(self, q: float, values: list[float] | None = None) -> float:
        return round(float(np.percentile(np.array(values or self.latencies) * 1e3, q)), 2)


def openblas_threads(threads: dict) -> int | None:
    return max((p["threads"] for p in threads["pools"] if p["api"] == "openblas"), default=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--faces", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4, help="placements take turns, probes/rounds each")
    ns = parser.parse_args()

    args, _, _ = load_serve_config(ns.config)
    options = Settings.from_args(args).tenancy.shard_actor_options  # what TenantService gets
    ray_default = {k: v for k, v in options.items() if k != "runtime_env"}
    began = time.perf_counter()
    load_before = os.getloadavg()[0]

    face_ids, vectors, queries = gallery_and_probes(ns.faces, ns.dim, ns.probes, ns.seed)
    driver_index = FaceIndex.build(face_ids, face_ids, vectors, ann_min_faces=ns.faces + 1, use_gpu=False)
    del vectors

    # The config's custom resources (cluster.yaml's securegate_index) are offered by this local node.
    custom = {name: 1000 for name in options.get("resources", {})}
    ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=int(options.get("num_gpus", 0) > 0),
             resources=custom or None, include_dashboard=False, log_to_driver=False)
    placements = {"driver": Placement(), "actor": Placement(), "actor_ray_default": Placement()}
    try:
        actors = {"actor": start_actor("shipped", options, ns), "actor_ray_default": start_actor("ray-default", ray_default, ns)}
        for chunk in np.array_split(np.arange(ns.probes), ns.rounds):
            probes = queries[chunk]
            placements["driver"].record({**time_search(driver_index, probes), "threads": threads_seen()})
            for name, actor in actors.items():
                placements[name].record(ray.get(actor.__ray_call__.remote(search_inside, probes)))
            placements["actor"].round_trips += round_trip(actors["actor"], probes)["latencies"]
        for actor in actors.values():
            ray.kill(actor)
    finally:
        ray.shutdown()

    labels = {"driver": "driver (this process)", "actor": f"actor as shipped {options}",
              "actor_ray_default": f"actor with Ray's thread default {ray_default}"}
    for name, placement in placements.items():
        print(f"{labels[name]}: p50 {placement.p(50)} ms p99 {placement.p(99)} ms; threads {placement.threads}", flush=True)
    driver, shipped, default = placements["driver"], placements["actor"], placements["actor_ray_default"]
    print(f"actor as shipped through Ray (TenantShard.search round trip): p50 {shipped.p(50, shipped.round_trips)} ms", flush=True)
    same_answers = driver.top1 == shipped.top1 == default.top1
    print(f"same top-1 in every process: {same_answers}; total {time.perf_counter() - began:.0f} s", flush=True)
    config = Path(ns.config).resolve()
    print(json.dumps({
        "config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else ns.config,
        "faces": ns.faces, "dim": ns.dim, "tier": "exact", "cores": os.cpu_count(), "probes": ns.probes,
        "shard_actor_options": options,
        "driver_p50_ms": driver.p(50), "actor_p50_ms": shipped.p(50), "actor_ray_default_p50_ms": default.p(50),
        "driver_p99_ms": driver.p(99), "actor_p99_ms": shipped.p(99), "actor_ray_default_p99_ms": default.p(99),
        "actor_round_trip_p50_ms": shipped.p(50, shipped.round_trips),
        "actor_vs_driver": round(shipped.p(50) / driver.p(50), 2),
        "ray_default_vs_driver": round(default.p(50) / driver.p(50), 2),
        "blas_threads": {name: openblas_threads(p.threads) for name, p in placements.items()},
        "same_answers": same_answers,
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after: others' work on the host
    }))
    return 0 if same_answers else 1


if __name__ == "__main__":
    raise SystemExit(main())
