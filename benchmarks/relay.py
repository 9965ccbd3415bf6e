"""Where an image's crops go between detection and embedding, measured: the two ways issue 24 names to stop
relaying them through the Ingress, against the relay itself, same deployments, same photos, one run.

    .venv/bin/python benchmarks/relay.py [--seconds 6] [--rounds 3] [--concurrency 1 4]

- relay:     the caller awaits the Detector's faces (crops included), then sends the crops to the Embedder
             (what the Ingress did before);
- pass-on:   the caller passes the Detector's DeploymentResponse to the Embedder without awaiting it (Ray
             Serve's model composition: the argument is resolved by the caller's handle router, so with the
             shipped throughput-optimised data path, gRPC by value, the crops still come back to the caller's
             process, now without a trip through its Python code);
- pipeline:  the Detector hands the crops to the Embedder itself and answers with the vectors (what ships).

A `Caller` deployment plays the Ingress (one replica, the Ingress's resources); the Detector and Embedder are the
shipped ones with the shipped options (configs/local.yaml). Each round runs every variant at every concurrency,
interleaved, each variant first in turn, so the host's load moves them alike. Reported per variant: images/s, p50, CPU per image by process;
ratios against the relay. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("SECUREGATE_SHARED", REPO.parent / "shared"))
VARIANTS = ("relay", "pass_on", "pipeline")


def build(models: str, data_dir: str):
    from ray import serve

    from cli.serve import load_serve_config
    from deployments.detector import Detector
    from deployments.embedder import Embedder
    from securegate.settings import DEFAULT_PACK, Settings

    args, options, _ = load_serve_config(REPO / "configs" / "local.yaml")
    settings = Settings.from_args({**args, "models": models, "data_dir": data_dir}).model_dump()

    class FacesEmbedder(Embedder.func_or_class):
        """The shipped Embedder, plus the method the pass-on variant needs: faces in, vectors out."""

        async def embed_faces(self, faces) -> np.ndarray:
            return await self.embed(np.stack([f.crop for f in faces]))

    @serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
    class Caller:
        def __init__(self, detector, embedder) -> None:
            self.detector, self.embedder = detector, embedder
            self.model: str | None = None

        async def run(self, variant: str, image: bytes) -> int:
            if variant == "relay":
                faces = await self.detector.detect.remote(image, crops=True)
                vectors = await self.embedder.embed.remote(np.stack([f.crop for f in faces]))
            elif variant == "pass_on":
                vectors = await self.embedder.embed_faces.remote(self.detector.detect.remote(image, crops=True))
            else:
                if self.model is None:
                    info = await self.embedder.info.remote()
                    self.model = info["model_id"]
                faces = await self.detector.detect.remote(image, embed_with=self.model)
                vectors = [f.vector for f in faces]
            return len(vectors)

    def configured(deployment, name):
        return deployment.options(**options.get(name, {}))

    embedder_options = {k: v for k, v in options.get("Embedder", {}).items()}
    embedder = serve.deployment(FacesEmbedder).options(name="Embedder", **embedder_options).bind(settings)
    detector = configured(Detector, "Detector").bind(settings, {DEFAULT_PACK: embedder})
    return Caller.bind(detector, embedder)


async def drive(handle, variant: str, probes: list[bytes], concurrency: int, seconds: float) -> dict:
    from pipeline import cpu_by_pid, cpu_delta_by_kind, ray_processes  # the end-to-end benchmark's CPU accounting

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await handle.run.remote(variant, probes[i % len(probes)])
            latencies.append(time.perf_counter() - started)
            i += concurrency

    kinds = ray_processes()
    cpu0, t0 = cpu_by_pid(kinds), time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    wall = time.perf_counter() - t0
    spent = cpu_delta_by_kind(kinds, cpu0, cpu_by_pid(kinds))
    n = max(len(latencies), 1)
    return {"variant": variant, "concurrency": concurrency, "ips": round(len(latencies) / wall, 2),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "cpu_ms_per_image": round(1000 * sum(spent.values()) / n, 1),
            "cpu_ms_by_process": {k: round(1000 * v / n, 1) for k, v in sorted(spent.items())}}


async def main_async(ns) -> dict:
    import ray
    from ray import serve

    from cli.serve import start_ray
    from pipeline import photos

    _, probes = photos(SHARED / "faces")
    start_ray(num_cpus=16, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    serve.start(proxy_location="Disabled")
    try:
        handle = serve.run(build(ns.models, tempfile.mkdtemp(prefix="sg-relay-")), name="securegate", route_prefix=None)
        for variant in VARIANTS:  # warm every path
            for probe in probes[:3]:
                await handle.run.remote(variant, probe)
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}", flush=True)
        runs: list[dict] = []
        for r in range(ns.rounds):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]  # each variant goes first in turn
            for c in ns.concurrency:
                for variant in order:
                    runs.append({"round": r, **await drive(handle, variant, probes, c, ns.seconds)})
                    print(f"  round {r + 1} {runs[-1]}", flush=True)
        summary = {}
        for c in ns.concurrency:
            def med(variant: str, key: str) -> float:
                return statistics.median(x[key] for x in runs if x["variant"] == variant and x["concurrency"] == c)

            summary[c] = {v: {"ips": med(v, "ips"), "p50_ms": med(v, "p50_ms"), "cpu_ms_per_image": med(v, "cpu_ms_per_image"),
                              "ips_vs_relay": round(med(v, "ips") / med("relay", "ips"), 3),
                              "cpu_vs_relay": round(med(v, "cpu_ms_per_image") / med("relay", "cpu_ms_per_image"), 3)}
                          for v in VARIANTS}
        return {"benchmark": "relay", "cpus": os.cpu_count(), "rounds": ns.rounds, "summary": summary, "runs": runs,
                "load_avg_at_end": os.getloadavg()[0]}
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=os.environ.get("SECUREGATE_MODELS", str(SHARED / "models")))
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ns = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(ns))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
