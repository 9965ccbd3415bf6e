"""Embedder benchmark: raw ONNX Runtime throughput against the Embedder deployment behind a Serve handle.

    .venv/bin/python benchmarks/embed.py [--threads 2] [--seconds 6] [--callers 64] [--models DIR]
    # experiments on the Serve side (defaults measure the deployment exactly as it ships):
    #   --throughput-mode     RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (Serve runs user code on its main event loops)

Same model, same crops, same ONNX Runtime thread count on both sides:
  raw    FaceEmbedder.embed() in this process at batch 1, 8 and 32;
  serve  only the Embedder deployment (max_batch_size=32, batch_wait_timeout_s=0.05), driven through its
         handle by N concurrent asyncio callers that each send ONE crop at a time.
Raw batch 32 and Serve are measured in alternating rounds with Serve deployed (idle while raw runs), and
CPU used by other processes on the host is reported per phase: the machine is shared, and a neighbour
busy during one phase only would fake the ratio. Prints tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import socket
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import numpy as np  # noqa: E402

from vision.images import decode  # noqa: E402
from vision.detector import FaceDetector  # noqa: E402
from vision.embedder import FaceEmbedder  # noqa: E402
from vision.packs import ModelPack, load_pack  # noqa: E402

SERVE_MAX_BATCH = 32
SERVE_BATCH_WAIT_S = 0.05
FACES_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "faces"
CPU = ["CPUExecutionProvider"]


# -- crops ---------------------------------------------------------------------------------------------
def face_photos(faces_dir: Path) -> list[Path]:
    """Every photo the shared set has: the manifest's identity shots plus the multi-face scenes."""
    with open(faces_dir / "manifest.csv", newline="") as f:
        listed = [faces_dir.parent / row["path"] for row in csv.DictReader(f)]
    scenes = sorted(p for p in (faces_dir / "scenes").glob("*") if p.is_file())
    return [p for p in dict.fromkeys(listed + scenes) if p.exists()]


def real_crops(pack: ModelPack, faces_dir: Path, threads: int) -> np.ndarray:
    """Aligned crops exactly as the Detector deployment makes them: SCRFD landmarks + norm_crop."""
    detector = FaceDetector(pack, CPU, threads=threads)
    crops = []
    for photo in face_photos(faces_dir):
        try:
            image = decode(photo.read_bytes(), max_pixels=40_000_000)
        except Exception:  # an unreadable sample costs a crop, not the run
            continue
        crops.extend(face.crop for face in detector.detect(image))
    if not crops:
        raise SystemExit(f"no faces detected under {faces_dir}")
    return np.stack(crops)


def cycled(crops: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """`count` crops taken round-robin from the real ones (there are only a few dozen real faces)."""
    return crops[(np.arange(count) + start) % len(crops)]


# -- host load ------------------------------------------------------------------------------------------
# The 2 cores are shared with whatever else runs on the host; a neighbour's CPU during one phase and not
# the other would fake a ratio. We count it: host busy time minus the time of this process tree (the
# driver, and Ray's raylet, GCS and workers, which are its descendants).
TICKS = os.sysconf("SC_CLK_TCK")


def host_busy_s() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS


def process_role(pid: int) -> str:
    """Which part of the benchmark a process of our tree is: where Serve's overhead is spent."""
    if pid == os.getpid():
        return "driver"
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "ray-other"
    return "replica" if cmd.startswith("ray::ServeReplica") else "ray-other"


def own_tree_cpu_s() -> dict[str, float]:
    """utime+stime (incl. reaped children) of this process and all its descendants, by role."""
    parent, cpu = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # exited while we looked
            continue
        rest = text[text.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        parent[pid] = int(rest[1])
        cpu[pid] = sum(int(v) for v in rest[11:15]) / TICKS
    ours, frontier = set(), {os.getpid()}
    while frontier:
        ours |= frontier
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - ours
    by_role: dict[str, float] = {"driver": 0.0, "replica": 0.0, "ray-other": 0.0}
    for pid in ours:
        by_role[process_role(pid)] += cpu.get(pid, 0.0)
    return by_role


class HostLoad:
    """Share of the host's CPU used by processes that are not ours, over a `with` block."""

    def __enter__(self):
        self._t, self._busy, self._own = time.perf_counter(), host_busy_s(), own_tree_cpu_s()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t
        after = own_tree_cpu_s()
        self.role_cores = {role: (after[role] - self._own.get(role, 0.0)) / wall for role in after}
        own = sum(self.role_cores.values()) * wall
        foreign = max(0.0, host_busy_s() - self._busy - own)
        self.own_cores = own / wall
        self.foreign_share = foreign / (wall * (os.cpu_count() or 1))
        return False


# -- raw ONNX Runtime ------------------------------------------------------------------------------------
def raw_fps(embedder: FaceEmbedder, crops: np.ndarray, batch: int, seconds: float) -> float:
    """Faces/s of back-to-back embed() calls at one batch size, after a warm-up."""
    batches = [cycled(crops, batch, start=i * batch) for i in range(8)]
    for b in batches[:3]:  # warm-up: ORT allocates its arena for this shape on the first runs
        embedder.embed(b)
    faces, calls, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        faces += len(embedder.embed(batches[calls % len(batches)]))
        calls += 1
    return faces / (time.perf_counter() - start)


# -- Serve ------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(threads: int) -> None:
    import ray
    from ray import serve

    # Logical CPUs only gate placement; the replica asks for `threads` of them, like the ORT session uses.
    ray.init(num_cpus=threads + 1, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    # Handle calls never touch HTTP, but a proxy would still be an idle process competing for 2 cores;
    # if this Ray version insists on one, it gets a free port, never 8000.
    serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1", "port": free_port()})


async def stop_serve() -> None:
    """Shut down from the loop the handle used: in throughput mode its router lives there."""
    import ray
    from ray import serve

    try:
        await serve.shutdown_async()
    finally:
        ray.shutdown()


def deploy_embedder(models: str, threads: int, callers: int):
    """Only the Embedder, with the same ORT threads as the raw run and as many CPUs as threads."""
    from ray import serve

    from deployments.embedder import Embedder

    settings = {
        "models": models,
        "embedder": {"threads": threads, "max_batch_size": SERVE_MAX_BATCH, "batch_wait_timeout_s": SERVE_BATCH_WAIT_S},
    }
    app = Embedder.options(
        num_replicas=1,
        # Every caller must be admitted at once, or batches are capped by admission rather than by policy.
        max_ongoing_requests=max(64, callers),
        ray_actor_options={"num_cpus": threads},
        user_config={"max_batch_size": SERVE_MAX_BATCH, "batch_wait_timeout_s": SERVE_BATCH_WAIT_S},
    ).bind(settings)
    return serve.run(app, name="embed-bench", route_prefix=None)


async def caller(handle, crops: np.ndarray, first: int, deadline: float) -> int:
    """One client: one crop per request, the next sent only when the previous answer is back."""
    sent, i = 0, first
    while time.perf_counter() < deadline:
        vectors = await handle.embed.remote(crops[i % len(crops)][None])
        assert vectors.shape[0] == 1
        sent, i = sent + 1, i + 1
    return sent


async def drive(handle, crops: np.ndarray, callers: int, seconds: float) -> tuple[int, float]:
    """(faces embedded, wall seconds) for `callers` concurrent callers over `seconds`."""
    start = time.perf_counter()
    counts = await asyncio.gather(*(caller(handle, crops, k, start + seconds) for k in range(callers)))
    return sum(counts), time.perf_counter() - start


async def measure_paired(embedder: FaceEmbedder, handle, crops: np.ndarray, callers: int, seconds: float, rounds: int) -> dict:
    """Raw batch 32 and Serve in alternating short rounds, so both see the same host (neighbours on a
    shared machine come and go within seconds); totals are summed over the rounds. One event loop for
    everything: in Serve's throughput mode the handle's router lives on the caller's loop."""
    # Warm-up outside the measurement: ORT arena growth, the first batches' routing set-up.
    await drive(handle, crops, callers, 2.0)
    slice_s = seconds / rounds
    raw_faces = raw_wall = serve_faces = serve_wall = 0.0
    raw_load, serve_load = [], []
    await handle.reset_batch_stats.remote()
    for _ in range(rounds):
        with HostLoad() as load:
            fps = raw_fps(embedder, crops, 32, slice_s)
        raw_faces, raw_wall = raw_faces + fps * slice_s, raw_wall + slice_s
        raw_load.append(load)
        with HostLoad() as load:
            faces, wall = await drive(handle, crops, callers, slice_s)
        serve_faces, serve_wall = serve_faces + faces, serve_wall + wall
        serve_load.append(load)
    stats = await handle.batch_stats.remote()
    return {
        "raw_b32_fps": raw_faces / raw_wall,
        "serve_fps": serve_faces / serve_wall,
        "serve_faces": int(serve_faces),
        "histogram": {int(k): int(v) for k, v in stats["histogram"].items()},
        "foreign_raw": sum(l.foreign_share for l in raw_load) / rounds,
        "foreign_serve": sum(l.foreign_share for l in serve_load) / rounds,
        "own_cores_raw": sum(l.own_cores for l in raw_load) / rounds,
        "serve_cores_by_role": {role: sum(l.role_cores[role] for l in serve_load) / rounds for role in serve_load[0].role_cores},
        "own_cores_serve": sum(l.own_cores for l in serve_load) / rounds,
    }


async def serve_session(args: argparse.Namespace, models: str, embedder: FaceEmbedder, crops: np.ndarray) -> dict:
    """Ray up, Embedder deployed, paired measurement, everything down again: one event loop throughout."""
    start_serve(args.threads)
    try:
        handle = deploy_embedder(models, args.threads, args.callers)
        return await measure_paired(embedder, handle, crops, args.callers, args.seconds, args.rounds)
    finally:
        await stop_serve()


# -- report -----------------------------------------------------------------------------------------------
def mean_batch(histogram: dict[int, int]) -> float:
    batches = sum(histogram.values())
    return sum(size * n for size, n in histogram.items()) / batches if batches else 0.0


def print_raw_table(raw: dict[int, float]) -> None:
    print("\nraw ONNX Runtime, FaceEmbedder.embed() in-process")
    print(f"  {'batch':>5}  {'faces/s':>9}")
    for batch, fps in raw.items():
        print(f"  {batch:>5}  {fps:>9.1f}")


def print_serve_table(serve_fps: float, ratio: float, histogram: dict[int, int], callers: int) -> None:
    print(f"\nServe handle, {callers} callers x 1 crop/request (rounds alternate with raw batch 32)")
    print(f"  faces/s {serve_fps:.1f}   vs raw batch 32: {ratio:.2f}x   (goal >= 0.90)")
    total = sum(histogram.values())
    print(f"\nformed batch sizes (crops per batch): {total} batches, mean {mean_batch(histogram):.1f}")
    width = max(histogram.values(), default=1)
    for size, count in sorted(histogram.items()):
        bar = "#" * max(1, round(40 * count / width))
        print(f"  {size:>3}  {count:>6}  {bar}")


def print_host_load(foreign_small: float, paired: dict) -> None:
    print("\nhost CPU used by processes not ours (shared machine): "
          f"raw b1/b8 {foreign_small:.0%}, raw b32 {paired['foreign_raw']:.0%}, serve {paired['foreign_serve']:.0%}"
          f"; our process tree used {paired['own_cores_raw']:.2f} cores in raw b32, {paired['own_cores_serve']:.2f} in serve")
    roles = ", ".join(f"{role} {cores:.2f}" for role, cores in paired["serve_cores_by_role"].items())
    print(f"cores used during serve, by process: {roles}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads (both sides)")
    parser.add_argument("--seconds", type=float, default=6.0, help="measurement time per figure")
    parser.add_argument("--callers", type=int, default=64, help="concurrent Serve callers")
    parser.add_argument("--throughput-mode", action="store_true",
                        help="RAY_SERVE_THROUGHPUT_OPTIMIZED=1: user code and router on the main event loops")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw-b32/serve rounds")
    parser.add_argument("--models", default=os.environ.get("SECUREGATE_MODELS"), help="model pack directory")
    parser.add_argument("--faces", type=Path, default=FACES_DIR, help="face photos with manifest.csv")
    args = parser.parse_args()
    if not args.models:
        parser.error("--models or SECUREGATE_MODELS is required")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    # insightface's norm_crop calls a scikit-image API that warns once per crop; it is not ours to fix.
    warnings.filterwarnings("ignore", category=FutureWarning, module="insightface")
    models = str(Path(args.models).resolve())
    pack = load_pack(models)
    crops = real_crops(pack, args.faces, args.threads)
    print(f"{pack.recognizer_name} ({pack.embedding_dim}-d), {len(crops)} real aligned crops, "
          f"threads={args.threads}, {args.seconds:g}s per figure, {args.callers} callers")

    embedder = FaceEmbedder(pack, CPU, threads=args.threads)
    with HostLoad() as small_load:
        raw_small = {b: raw_fps(embedder, crops, b, args.seconds) for b in (1, 8)}
    if args.throughput_mode:
        # Read when ray.serve is first imported, here and (inherited through the raylet) in the replica.
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    paired = asyncio.run(serve_session(args, models, embedder, crops))

    raw = {**raw_small, 32: paired["raw_b32_fps"]}
    ratio = paired["serve_fps"] / raw[32]
    # Faces per CPU-second of our own process tree: what each side gets out of the CPU it was given,
    # which neighbours on the host cannot distort the way they distort faces/s.
    raw_per_cpu = raw[32] / max(paired["own_cores_raw"], 1e-9)
    serve_per_cpu = paired["serve_fps"] / max(paired["own_cores_serve"], 1e-9)
    print_raw_table(raw)
    print_serve_table(paired["serve_fps"], ratio, paired["histogram"], args.callers)
    print_host_load(small_load.foreign_share, paired)
    print(f"faces per CPU-second of our processes: raw b32 {raw_per_cpu:.1f}, serve {serve_per_cpu:.1f} "
          f"({serve_per_cpu / raw_per_cpu:.2f}x)")
    figures = {
        "raw_b1_fps": round(raw[1], 1),
        "raw_b8_fps": round(raw[8], 1),
        "raw_b32_fps": round(raw[32], 1),
        "serve_fps": round(paired["serve_fps"], 1),
        "serve_vs_raw_b32": round(ratio, 3),
        "mean_batch": round(mean_batch(paired["histogram"]), 2),
        "batch_histogram": {str(k): v for k, v in sorted(paired["histogram"].items())},
        "threads": args.threads,
        "callers": args.callers,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "serve_faces": paired["serve_faces"],
        "crops": len(crops),
        "model": pack.model_id,
        "cpus": os.cpu_count(),
        "foreign_cpu_raw_b32": round(paired["foreign_raw"], 3),
        "foreign_cpu_serve": round(paired["foreign_serve"], 3),
        "raw_b32_own_cores": round(paired["own_cores_raw"], 2),
        "serve_own_cores": round(paired["own_cores_serve"], 2),
        "raw_b32_faces_per_cpu_s": round(raw_per_cpu, 1),
        "serve_faces_per_cpu_s": round(serve_per_cpu, 1),
        "serve_vs_raw_per_cpu": round(serve_per_cpu / raw_per_cpu, 3),
        "serve_cores_by_role": {k: round(v, 2) for k, v in paired["serve_cores_by_role"].items()},
        "throughput_mode": args.throughput_mode,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
