"""End to end: SecureGate's search as users meet it (HTTP and a Serve handle, the shipped config) against the
insightface reference pipeline in plain processes, same photos, same cores, one run.

    .venv/bin/python benchmarks/pipeline.py [--seconds 8] [--config configs/local.yaml] [--models DIR]

Reference: SCRFD + ArcFace from insightface's `model_zoo`, `norm_crop`, a numpy dot against a small gallery,
every photo decoded from its bytes each time. Tried in every in-process configuration the issue names (one
process with ONNX Runtime's default threads; N processes x 1 thread; spinning on and off) and compared
against the best of them.

SecureGate: the app deployed from the Serve config as `securegate serve --config` deploys it (cli.serve), a
tenant with one enrolled photo per identity, then `POST /v1/search` over HTTP and `Ingress.search` over a
handle, and a two-image `POST /v1/verify` over HTTP, at client concurrency 1, 4 and 16: images/s, p50/p99
latency, the share of calls refused 503 `overloaded` (clients that do not retry; they wait out Retry-After),
CPU seconds per image (all processes of the Ray session plus the client), and CPU per image by process kind
(the per-stage breakdown).

On a shared host the load moves between measurements: `--rounds N` repeats the reference's best configuration
and every SecureGate measurement N times, interleaved, and the ratios are the medians of the rounds' own
ratios.

Last line: one JSON object (`http_vs_reference`, `reference_ips`, `http_ips`, `http_p99_ms`, `c1_p50_ms`,
`reference_c1_ms`, `refused_rate`, `c16_p99_ms`, `latency_budget_s`, ...).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from deployed_app import deployed  # noqa: E402  (benchmarks/, the script's own folder)

from cli.serve import APP_NAME  # noqa: E402
from securegate.errors import ApiError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CONCURRENCY = (1, 4, 16)


# ---- workload ------------------------------------------------------------------------------------------
def photos(faces_dir: Path) -> tuple[dict[str, Path], list[bytes]]:
    """(identity -> its first photo: the gallery, every photo's bytes: the probes)."""
    gallery: dict[str, Path] = {}
    probes = []
    with open(faces_dir / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            path = faces_dir.parent / row["path"]
            if "/identities/" in row["path"]:
                gallery.setdefault(row["identity"], path)
            probes.append(path.read_bytes())
    return gallery, probes


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---- the reference pipeline -------------------------------------------------------------------------------
class Reference:
    """insightface's own pieces, nothing of SecureGate's."""

    def __init__(self, models: Path, threads: int | None, spinning: bool, gallery: dict[str, Path]) -> None:
        import cv2
        import onnxruntime as ort
        from insightface.model_zoo import model_zoo

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        spin = "1" if spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        files = sorted(models.glob("*.onnx"))
        det = next(f for f in files if "scrfd" in f.name or "det_" in f.name)
        rec = next(f for f in files if f != det and "batch1" not in f.name)
        self.cv2 = cv2
        self.detector = model_zoo.get_model(str(det), providers=["CPUExecutionProvider"], sess_options=opts)
        self.detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
        self.recognizer = model_zoo.get_model(str(rec), providers=["CPUExecutionProvider"], sess_options=opts)
        self.recognizer.prepare(ctx_id=-1)
        vectors = [self.embed(self.faces(p.read_bytes()))[0] for p in gallery.values()]
        self.gallery = np.stack(vectors)

    def faces(self, data: bytes):
        from insightface.utils.face_align import norm_crop

        image = self.cv2.imdecode(np.frombuffer(data, np.uint8), self.cv2.IMREAD_COLOR)
        _, kpss = self.detector.detect(image, max_num=0)
        return [norm_crop(image, k) for k in (kpss if kpss is not None else [])]

    def embed(self, crops) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.recognizer.output_shape[1]), np.float32)
        feats = self.recognizer.get_feat(crops)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)

    def search(self, data: bytes) -> list[int]:
        return [int(np.argmax(self.gallery @ v)) for v in self.embed(self.faces(data))]


def _reference_worker(models: str, threads: int | None, spinning: bool, gallery: dict[str, str], probes: list[bytes],
                      seconds: float, start, out) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    ref = Reference(Path(models), threads, spinning, {k: Path(v) for k, v in gallery.items()})
    ref.search(probes[0])  # warm
    start.wait()
    latencies, done, i = [], 0, 0
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - t0 < seconds:
        s = time.perf_counter()
        ref.search(probes[i % len(probes)])
        latencies.append(time.perf_counter() - s)
        done += 1
        i += 1
    out.put({"images": done, "wall": time.perf_counter() - t0, "cpu": time.process_time() - cpu0, "latencies": latencies})


def run_reference(models: Path, processes: int, threads: int | None, spinning: bool, gallery, probes, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_reference_worker, args=(str(models), threads, spinning, {k: str(v) for k, v in gallery.items()},
                                                          probes, seconds, start, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    # Every worker has loaded its models before the clock starts: wait for their CPU to settle.
    while any(psutil.Process(p.pid).cpu_percent(interval=0.3) > 20 for p in procs):
        pass
    start.set()
    results = [out.get(timeout=seconds * 4 + 120) for _ in procs]
    for p in procs:
        p.join()
    images = sum(r["images"] for r in results)
    wall = max(r["wall"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return {"processes": processes, "threads": threads or "default", "spinning": spinning,
            "ips": round(images / wall, 2), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "cpu_s_per_image": round(sum(r["cpu"] for r in results) / max(images, 1), 4)}


# ---- SecureGate ------------------------------------------------------------------------------------------
def ray_processes() -> dict[int, str]:
    """pid -> kind for every process of the local Ray session this process started (replicas by deployment,
    proxy, daemons): descendants only, so other Ray sessions on the host (a test run) are not counted."""
    kinds = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            proc.info = {"pid": proc.pid, "cmdline": proc.cmdline()}
        except psutil.Error:
            continue
        cmd = " ".join(proc.info["cmdline"] or ())
        if "ray::ServeReplica:securegate:" in cmd:
            kinds[proc.info["pid"]] = cmd.split("ray::ServeReplica:securegate:")[1].split(".")[0].split()[0]
        elif "ray::ProxyActor" in cmd:
            kinds[proc.info["pid"]] = "proxy"
        elif "ray::ServeController" in cmd:
            kinds[proc.info["pid"]] = "controller"
        elif "ray::TenantShard" in cmd:  # a process is titled after its actor's class, not the actor's name
            kinds[proc.info["pid"]] = "shard actors"
        elif "ray::" in cmd:
            kinds[proc.info["pid"]] = "other ray workers"
        elif any(d in cmd for d in ("gcs_server", "raylet", "dashboard", "log_monitor", "runtime_env", "monitor.py")):
            kinds[proc.info["pid"]] = "ray daemons"
    return kinds


def cpu_by_pid(kinds: dict[int, str]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pid in kinds:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def cpu_delta_by_kind(kinds: dict[int, str], before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU seconds spent per process kind between two snapshots (processes alive at both)."""
    out: dict[str, float] = {}
    for pid in before.keys() & after.keys():
        out[kinds[pid]] = out.get(kinds[pid], 0.0) + after[pid] - before[pid]
    return out


class Refused(Exception):
    """An answer other than 200 (503 `overloaded` past capacity), with its Retry-After in seconds if any."""

    def __init__(self, status: int, retry_after: str | float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after_s = float(retry_after) if retry_after else None


def drive(call, probes: list[bytes], concurrency: int, seconds: float, images_per_call: int = 1) -> dict:
    """`concurrency` client threads calling `call(k)` (k: the call's number) back to back for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    refused = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(k: int) -> None:
        nonlocal refused
        i = k
        while time.perf_counter() < deadline:
            s = time.perf_counter()
            try:
                call(i)
                with lock:
                    latencies.append(time.perf_counter() - s)
            except Exception as exc:  # counted, not fatal: a 429/503 under overload is an answer too
                with lock:
                    errors.append(type(exc).__name__)
                    refused += getattr(exc, "status", None) == 503
                # A well-behaved client waits as told (Retry-After) before its next image, as SecureGateClient does.
                retry_after = getattr(exc, "retry_after_s", None)
                if retry_after:
                    time.sleep(min(retry_after, max(0.0, deadline - time.perf_counter())))
            i += concurrency

    kinds = ray_processes()
    me = psutil.Process()
    cpu0, client0, t0 = cpu_by_pid(kinds), me.cpu_times(), time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    spent, client1 = cpu_delta_by_kind(kinds, cpu0, cpu_by_pid(kinds)), me.cpu_times()
    n = max(len(latencies) * images_per_call, 1)
    breakdown = {k: round(v / n, 4) for k, v in sorted(spent.items())}
    breakdown["client"] = round((client1.user + client1.system - client0.user - client0.system) / n, 4)
    calls = len(latencies) + len(errors)
    return {"concurrency": concurrency, "ips": round(len(latencies) * images_per_call / wall, 2), "errors": len(errors),
            "refused_rate": round(refused / calls, 4) if calls else 0.0,
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "cpu_s_per_image": round(sum(breakdown.values()), 4), "cpu_s_per_image_by_process": breakdown}


def run_securegate(config_path: Path, models: Path, gallery: dict[str, Path], probes: list[bytes], seconds: float,
                   rounds: int, reference) -> dict:
    """The measurements of each round, SecureGate's and (deployed, idle) the reference's: `reference()`."""
    import httpx
    from ray import serve

    with deployed(config_path, models) as (base, token):
        with httpx.Client(base_url=base, timeout=120) as http:
            created = http.post("/v1/tenants", json={"name": "bench"}, headers={"Authorization": f"Bearer {token}"})
            created.raise_for_status()
            key = created.json()["api_key"]
            auth = {"Authorization": f"Bearer {key}"}
            for name, path in gallery.items():
                person = http.post("/v1/persons", json={"external_id": name}, headers=auth).json()
                http.post(f"/v1/persons/{person['person_id']}/faces",
                          json={"image": base64.b64encode(path.read_bytes()).decode()}, headers=auth).raise_for_status()
        encoded = [base64.b64encode(p).decode() for p in probes]
        local = threading.local()

        def post(path: str, body: dict | None = None, raw: bytes | None = None) -> None:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=base, timeout=120, headers=auth)
            if raw is not None:  # the form SecureGateClient sends: the image as the body
                r = local.client.post(path, content=raw, headers={"Content-Type": "application/octet-stream"})
            else:
                r = local.client.post(path, json=body)
            if r.status_code != 200:
                raise Refused(r.status_code, r.headers.get("Retry-After"))

        def http_search(k: int) -> None:
            post("/v1/search", raw=probes[k % len(probes)])

        def http_search_json(k: int) -> None:
            post("/v1/search", {"image": encoded[k % len(probes)]})

        def http_verify(k: int) -> None:
            post("/v1/verify", {"image_a": encoded[k % len(probes)], "image_b": encoded[(k + 1) % len(probes)]})

        handle = serve.get_app_handle(APP_NAME)

        def handle_search(k: int) -> None:
            try:
                handle.search.remote(key, probes[k % len(probes)]).result()
            except ApiError as exc:
                raise Refused(exc.status, exc.details.get("retry_after_s")) from None

        for k in range(4):
            http_search(k)
            http_search_json(k)
            handle_search(k)
            http_verify(k)
        out = []
        for r in range(rounds):
            measured = {"reference": reference(), "http": [], "http_json": [], "handle": [], "verify": []}
            print(f"  round {r + 1}: reference {measured['reference']}", flush=True)
            for c in CONCURRENCY:
                for kind, call, images in (("http", http_search, 1), ("http_json", http_search_json, 1),
                                           ("handle", handle_search, 1), ("verify", http_verify, 2)):
                    measured[kind].append(drive(call, probes, c, seconds, images))
                    print(f"  {kind:<7}c={c:<3} {measured[kind][-1]}", flush=True)
            out.append(measured)
        return out


def summary(measured: dict, reference_c1_ms: float) -> dict:
    """One round's figures: HTTP search against the reference of the same round."""
    http_best = max(measured["http"], key=lambda r: r["ips"])
    by_c = {r["concurrency"]: r for r in measured["http"]}
    return {"reference_ips": measured["reference"]["ips"], "http_ips": http_best["ips"],
            "http_best_concurrency": http_best["concurrency"],
            "http_vs_reference": round(http_best["ips"] / measured["reference"]["ips"], 3),
            "http_p99_ms": http_best["p99_ms"], "c1_p50_ms": by_c[1]["p50_ms"],
            "c1_p50_minus_reference_ms": round(by_c[1]["p50_ms"] - reference_c1_ms, 1),
            "c16_vs_c4": round(by_c[16]["ips"] / by_c[4]["ips"], 3) if by_c[4]["ips"] else None,
            "c16_p99_ms": by_c[16]["p99_ms"], "handle_ips": max(r["ips"] for r in measured["handle"]),
            # The JSON form (base64 in the body) against the raw form the client sends, same round.
            "json_vs_raw": {j["concurrency"]: round(j["ips"] / r["ips"], 3) if r["ips"] else None
                            for j, r in zip(measured["http_json"], measured["http"])},
            "json_cpu_s_per_image": {r["concurrency"]: r["cpu_s_per_image"] for r in measured["http_json"]},
            "raw_cpu_s_per_image": {r["concurrency"]: r["cpu_s_per_image"] for r in measured["http"]},
            "http_cpu_s_per_image": http_best["cpu_s_per_image"],
            "breakdown_cpu_s_per_image": http_best["cpu_s_per_image_by_process"],
            "refused_rate": {kind: {r["concurrency"]: r["refused_rate"] for r in measured[kind]}
                             for kind in ("http", "handle", "verify")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of reference and SecureGate")
    parser.add_argument("--config", default=str(REPO / "configs" / "local.yaml"))
    parser.add_argument("--models", default=os.environ.get("SECUREGATE_MODELS", str(SHARED / "models")))
    parser.add_argument("--faces", default=str(SHARED / "faces"))
    ns = parser.parse_args()
    models = Path(ns.models)
    gallery, probes = photos(Path(ns.faces))
    cores = os.cpu_count() or 1
    print(f"{len(probes)} probe photos, gallery of {len(gallery)}; {cores} cores; load {os.getloadavg()}", flush=True)

    reference = []
    for processes, threads, spinning in [(1, None, True), (1, None, False), (cores, 1, True), (cores, 1, False)]:
        reference.append(run_reference(models, processes, threads, spinning, gallery, probes, ns.seconds))
        print(f"  reference {reference[-1]}", flush=True)
    single = run_reference(models, 1, None, False, gallery, probes, ns.seconds / 2)  # one image at a time
    best = max(reference, key=lambda r: r["ips"])
    config = (best["processes"], None if best["threads"] == "default" else best["threads"], best["spinning"])

    def reference_round() -> dict:
        return run_reference(models, *config, gallery, probes, ns.seconds)

    rounds = run_securegate(Path(ns.config), models, gallery, probes, ns.seconds, ns.rounds, reference_round)
    summaries = [summary(r, single["p50_ms"]) for r in rounds]
    median = {key: statistics.median(s[key] for s in summaries)
              for key in ("reference_ips", "http_ips", "http_vs_reference", "http_p99_ms", "c1_p50_ms",
                          "c1_p50_minus_reference_ms", "c16_vs_c4", "c16_p99_ms", "handle_ips", "http_cpu_s_per_image")}
    from cli.serve import read_config, securegate_app  # the budget the deployed config set (or the default)
    from securegate.settings import Settings

    admission = getattr(Settings.from_args(securegate_app(read_config(ns.config)).args), "admission", None)
    budget = admission.latency_budget_s if admission is not None else None  # None: a version without one
    result = {
        **median, "reference_config": {k: best[k] for k in ("processes", "threads", "spinning")},
        "reference_c1_ms": single["p50_ms"], "reference_cpu_s_per_image": best["cpu_s_per_image"],
        "latency_budget_s": budget,
        "refused_rate": {kind: {c: max(s["refused_rate"][kind][c] for s in summaries) for c in CONCURRENCY}
                         for kind in ("http", "handle", "verify")},  # the worst round
        "json_vs_raw": {c: statistics.median(s["json_vs_raw"][c] or 0 for s in summaries) for c in CONCURRENCY},
        "breakdown_cpu_s_per_image": summaries[-1]["breakdown_cpu_s_per_image"],
        "rounds": summaries, "reference_all": reference, "measured": rounds,
        "load_avg_at_end": os.getloadavg()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
