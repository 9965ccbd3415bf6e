"""GPU host check: what an operator runs once on a GPU machine (under 5 minutes), ending with one JSON line.

    make setup GPU=1 && .venv/bin/python benchmarks/gpu.py          # on the GPU host
    .venv/bin/python benchmarks/gpu.py --cpu-check                  # anywhere: every step except CUDA

Steps, each a key of the JSON line with its own "ok" (the script exits 1 when one fails):
  install     exactly one ONNX Runtime build and one FAISS build installed; ORT providers; GPUs FAISS sees.
  parity      embeddings of the same crops with the CUDA EP and the CPU EP: max |difference| <= 1e-3.
  faiss       top-10 of a GPU IndexFlatIP == a CPU IndexFlatIP (200K x 512), and FaceIndex's GPU tier returns
              exactly what its exact tier returns (persons, faces, similarities).
  embed       FaceEmbedder throughput (faces/s) at batch 1, 32 and 64 on the CUDA EP, with the production pack
              (~/.insightface/models/antelopev2) when present, else --models / SECUREGATE_MODELS / ../shared/models.
  iresnet100  glintr100's architecture without its weights: arcface_torch's IResNet-100 (blocks 3/13/30/3,
              64-512 channels, 112x112 -> 512) built here as an ONNX graph with random weights (weights do not
              change speed; an offline host cannot download antelopev2), FP32 and FP16, timed at batch 64 on
              the CUDA EP. Goal on one H200: >= 10,000 faces/s.
  serve       configs/gpu.yaml started for real (HTTP on 127.0.0.1): Detector and Embedder replicas RUNNING,
              on the CUDA EP, and each replica's process listed by nvidia-smi as holding GPU memory.
--cpu-check runs the same code with the CPU EP and a CPU faiss flat index injected into FaceIndex's GPU path:
the IResNet graphs are built, shape-checked (output 512) and run once at batch 1 (FP16 against FP32: cosine), the
serve step is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
PARITY_ATOL = 1e-3
IRESNET100_LAYERS = (3, 13, 30, 3)
GOAL_FACES_PER_S = 10_000


# ---------------------------------------------------------------------------------------------- IResNet-100


class _Graph:
    """Accumulates ONNX nodes and random initialisers (in `dtype`) under unique names."""

    def __init__(self, dtype: type, seed: int) -> None:
        self.dtype, self.rng = dtype, np.random.default_rng(seed)
        self.nodes: list = []
        self.weights: list = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, value: np.ndarray) -> str:
        name = self.name(kind)
        self.weights.append(numpy_helper.from_array(value.astype(self.dtype), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int) -> str:
        # He-normal weights keep activations in FP16 range through 100 layers (speed does not depend on them).
        w = self.rng.standard_normal((cout, cin, kernel, kernel), dtype=np.float32) * np.sqrt(2.0 / (cin * kernel * kernel))
        pad = kernel // 2
        return self.node("Conv", [x, self.const("w", w)], kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad] * 4)

    def bn(self, x: str, channels: int, scale: float = 1.0) -> str:
        """BatchNorm (eps 1e-5) as a trained model has it: scale, bias, running mean and variance."""
        gamma = np.full(channels, scale, np.float32)
        beta = self.rng.normal(0, 0.01, channels).astype(np.float32)
        mean = self.rng.normal(0, 0.01, channels).astype(np.float32)
        var = self.rng.uniform(0.9, 1.1, channels).astype(np.float32)
        return self.node("BatchNormalization", [x, self.const("gamma", gamma), self.const("beta", beta),
                                                self.const("mean", mean), self.const("var", var)], epsilon=1e-5)

    def prelu(self, x: str, channels: int) -> str:
        return self.node("PRelu", [x, self.const("slope", np.full((channels, 1, 1), 0.25, np.float32))])


def iresnet_onnx(layers: tuple[int, ...] = IRESNET100_LAYERS, fp16: bool = False, seed: int = 0,
                 embedding: int = 512) -> onnx.ModelProto:
    """arcface_torch's IResNet (backbones/iresnet.py) as an ONNX graph with random weights: input [N,3,112,112]
    float32, output [N,embedding] float32. conv3x3(3->64)-BN-PReLU; four stages of IBasicBlocks (64/128/256/512
    channels, stride 2 in each stage's first block, whose shortcut is conv1x1-BN): BN-conv3x3-BN-PReLU-conv3x3-BN
    + shortcut; BN, flatten (512x7x7), FC -> embedding, BN. FP16 casts the input once and computes in float16
    (as arcface_torch's fp16 export does), the output cast back to float32."""
    dtype = np.float16 if fp16 else np.float32
    g = _Graph(dtype, seed)
    x = g.node("Cast", ["input"], to=TensorProto.FLOAT16) if fp16 else "input"
    x = g.prelu(g.bn(g.conv(x, 3, 64, 3, 1), 64), 64)
    inplanes = 64
    for planes, blocks in zip((64, 128, 256, 512), layers):
        for block in range(blocks):
            stride = 2 if block == 0 else 1
            out = g.bn(x, inplanes)
            out = g.prelu(g.bn(g.conv(out, inplanes, planes, 3, 1), planes), planes)
            # residual branch scaled down (like zero_init_residual, not zero) so 49 blocks stay finite in FP16
            out = g.bn(g.conv(out, planes, planes, 3, stride), planes, scale=0.2)
            shortcut = g.bn(g.conv(x, inplanes, planes, 1, stride), planes) if block == 0 else x
            x = g.node("Add", [out, shortcut])
            inplanes = planes
    x = g.node("Flatten", [g.bn(x, 512)], axis=1)
    fc = g.rng.standard_normal((embedding, 512 * 7 * 7), dtype=np.float32) * np.sqrt(1.0 / (512 * 7 * 7))
    x = g.node("Gemm", [x, g.const("fc_w", fc), g.const("fc_b", np.zeros(embedding, np.float32))], transB=1)
    x = g.bn(x, embedding)
    if fp16:
        x = g.node("Cast", [x], to=TensorProto.FLOAT)
    g.nodes[-1].output[0] = "embedding"
    graph = helper.make_graph(
        g.nodes, f"iresnet{sum(layers) * 2 + 2}_{'fp16' if fp16 else 'fp32'}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", embedding])], g.weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every ONNX Runtime >= 1.14
    return model


def parameters(model: onnx.ModelProto) -> int:
    return int(sum(np.prod(w.dims) for w in model.graph.initializer))


def session(model_bytes: bytes, providers: list[str]):
    import onnxruntime as ort

    from vision.runtime import session_options

    return ort.InferenceSession(model_bytes, sess_options=session_options(None), providers=providers)


def faces_per_s(run, batch: int, seconds: float, min_runs: int = 3) -> float:
    run()  # warm-up (CUDA kernels are chosen on the first run)
    runs, started = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - started < seconds:
        run()
        runs += 1
    return round(batch * runs / (time.perf_counter() - started), 1)


def check_iresnet(cpu_check: bool, seconds: float) -> dict:
    result: dict = {"layers": list(IRESNET100_LAYERS), "goal_faces_per_s": GOAL_FACES_PER_S}
    batch = 1 if cpu_check else 64
    x = np.random.default_rng(1).standard_normal((batch, 3, 112, 112), dtype=np.float32)
    outputs = {}
    for precision in ("fp32", "fp16"):
        started = time.perf_counter()
        model = iresnet_onnx(fp16=precision == "fp16")
        onnx.checker.check_model(model)
        inferred = onnx.shape_inference.infer_shapes(model)
        dims = [d.dim_value or d.dim_param for d in inferred.graph.output[0].type.tensor_type.shape.dim]
        entry = {"params": parameters(model), "output_shape": dims, "build_s": round(time.perf_counter() - started, 2)}
        sess = session(model.SerializeToString(), CPU if cpu_check else CUDA)
        entry["providers"] = sess.get_providers()
        out = sess.run(None, {"input": x})[0]
        entry["output_shape"] = list(out.shape)
        entry["finite"] = bool(np.isfinite(out).all())
        outputs[precision] = out
        entry["batch"] = batch
        entry["faces_per_s"] = faces_per_s(lambda: sess.run(None, {"input": x}), batch, 0.0 if cpu_check else seconds,
                                           min_runs=1 if cpu_check else 10)
        result[precision] = entry
    if "fp16" in outputs:
        a, b = outputs["fp32"], outputs["fp16"]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        result["fp16_vs_fp32_min_cosine"] = round(float(cosine.min()), 5)
    shapes_ok = all(result[p]["output_shape"][-1] == 512 for p in ("fp32", "fp16"))
    finite = all(result[p].get("finite", True) for p in ("fp32", "fp16"))
    result["ok"] = shapes_ok and finite
    if not cpu_check:
        best = max(result["fp32"]["faces_per_s"], result["fp16"]["faces_per_s"])
        result["best_faces_per_s"] = best
        result["meets_goal"] = best >= GOAL_FACES_PER_S
    return result


# ---------------------------------------------------------------------------------------------- install, parity, embed


def installed(*names: str) -> list[str]:
    return [f"{n}=={metadata.version(n)}" for n in names if list(metadata.distributions(name=n))]


def check_install(cpu_check: bool) -> dict:
    import faiss
    import onnxruntime as ort

    ort_dists = installed("onnxruntime", "onnxruntime-gpu")
    faiss_dists = installed("faiss-cpu", "faiss-gpu-cu12", "faiss-gpu")
    result = {"onnxruntime": ort_dists, "faiss": faiss_dists, "ort_providers": ort.get_available_providers(),
              "faiss_gpus": faiss.get_num_gpus()}
    smi = shutil.which("nvidia-smi")
    if smi:
        result["gpus"] = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                        capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
    one_build = len(ort_dists) == 1 and len(faiss_dists) == 1
    gpu_ready = "CUDAExecutionProvider" in result["ort_providers"] and result["faiss_gpus"] > 0
    result["ok"] = one_build and (cpu_check or gpu_ready)
    return result


def choose_pack(explicit: str | None):
    """The production pack when it is on this host (never downloaded here), else the given/shared one."""
    from vision.packs import ModelPackError, load_pack, resolve_pack

    try:
        return resolve_pack("antelopev2", allow_download=False)
    except (ModelPackError, OSError):
        fallback = explicit or os.environ.get("SECUREGATE_MODELS") or str(REPO.parent / "shared" / "models")
        return load_pack(fallback)


def crops(count: int, size: int) -> list[np.ndarray]:
    """Aligned-crop-shaped images (BGR uint8). Numerics, not recognition, are compared."""
    rng = np.random.default_rng(2)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def check_parity(pack, cpu_check: bool) -> dict:
    from vision.embedder import FaceEmbedder

    sample = crops(16, pack.recognizer_input_size)
    reference = FaceEmbedder(pack, CPU).embed(sample)
    other = FaceEmbedder(pack, CPU if cpu_check else CUDA)
    diff = float(np.abs(other.embed(sample) - reference).max())
    return {"pack": pack.name, "recognizer": pack.recognizer_name, "providers": other.providers,
            "max_abs_diff": diff, "atol": PARITY_ATOL,
            "ok": diff <= PARITY_ATOL and (cpu_check or other.providers[0] == "CUDAExecutionProvider")}


def check_embed(pack, cpu_check: bool, seconds: float) -> dict:
    from vision.embedder import FaceEmbedder

    embedder = FaceEmbedder(pack, CPU if cpu_check else CUDA)
    result = {"pack": pack.name, "recognizer": pack.recognizer_name, "dim": pack.embedding_dim,
              "providers": embedder.providers, "strategy": embedder.strategy}
    for batch in (1, 32, 64):
        sample = crops(batch, pack.recognizer_input_size)
        result[f"batch_{batch}_faces_per_s"] = faces_per_s(lambda: embedder.embed(sample), batch,
                                                           0.0 if cpu_check else seconds, min_runs=1 if cpu_check else 5)
    result["ok"] = cpu_check or embedder.providers[0] == "CUDAExecutionProvider"
    return result


# ---------------------------------------------------------------------------------------------- FAISS


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def check_faiss(cpu_check: bool) -> dict:
    import faiss

    from tenancy.index import FaceIndex

    n, dim, k = (20_000 if cpu_check else 200_000), 512, 10
    rng = np.random.default_rng(3)
    gallery, queries = _unit(rng, n, dim), _unit(rng, 100, dim)
    cpu = faiss.IndexFlatIP(dim)
    cpu.add(gallery)
    cpu_scores, cpu_labels = cpu.search(queries, k)
    # --cpu-check: a second CPU flat index stands in for the GPU one (same calls), so this code path runs.
    device = faiss.IndexFlatIP(dim) if cpu_check else faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))
    device.add(gallery)
    started = time.perf_counter()
    dev_scores, dev_labels = device.search(queries, k)
    search_ms = (time.perf_counter() - started) * 1e3
    identical = bool((dev_labels == cpu_labels).all())
    # Labels may swap only between scores equal to float32 rounding (ties); anything else is a real difference.
    order_ok = bool(np.all((dev_labels == cpu_labels) | (np.abs(dev_scores - cpu_scores) < 1e-5)))

    ids = [f"{i:032x}" for i in range(n)]
    persons = [f"p{i // 4}" for i in range(n)]
    flat_index = (lambda d: faiss.IndexFlatIP(d)) if cpu_check else None
    gpu_tier = FaceIndex.build(ids, persons, gallery, use_gpu=True, **({"flat_index": flat_index} if flat_index else {}))
    exact_tier = FaceIndex.build(ids, persons, gallery, use_gpu=False, ann_min_faces=n + 1)
    probes = (0.7 * gallery[:50] + 0.7 * _unit(rng, 50, dim)).astype(np.float32)
    same = gpu_tier.search(probes, 10, 0.2) == exact_tier.search(probes, 10, 0.2)
    return {"faces": n, "dim": dim, "k": k, "device": "cpu-stand-in" if cpu_check else f"{faiss.get_num_gpus()} GPU(s)",
            "topk_identical": identical, "topk_identical_up_to_ties": order_ok,
            "batch100_search_ms": round(search_ms, 2), "faceindex_gpu_tier_equals_exact": same,
            "ok": order_ok and same}


# ---------------------------------------------------------------------------------------------- serve gpu.yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_serve(models: str, timeout_s: float) -> dict:
    """configs/gpu.yaml for real: replicas running, on CUDA, and their processes on the GPU per nvidia-smi."""
    import httpx
    import ray
    from ray import serve
    from ray.util.state import list_actors

    from cli.serve import load_serve_config
    from graph import bind_app

    args, options, _ = load_serve_config(REPO / "configs" / "gpu.yaml")
    data_dir = tempfile.mkdtemp(prefix="securegate-gpu-check-")
    args.update(models=models, data_dir=data_dir)
    port = _free_port()
    ray.init(address="local", include_dashboard=True, log_to_driver=False)  # list_actors (replica PIDs) needs it
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        started = time.perf_counter()
        serve.run(bind_app(args, options), name="securegate", route_prefix="/")
        ready = httpx.get(f"http://127.0.0.1:{port}/v1/readyz", timeout=timeout_s).status_code
        result: dict = {"start_s": round(time.perf_counter() - started, 1), "readyz": ready, "deployments": {}}
        smi = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
        on_gpu = {int(p): int(m) for p, m in (line.split(",") for line in smi.strip().splitlines() if line.strip())}
        result["nvidia_smi_pids"] = on_gpu
        alive = list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
        ok = ready == 200
        for name in ("Detector", "Embedder"):
            pids = sorted(a.pid for a in alive if a.class_name == f"ServeReplica:securegate:{name}")
            handle = serve.get_deployment_handle(name, app_name="securegate")
            providers = {tuple(handle.info.remote().result()["providers"]) for _ in range(2 * len(pids))}
            wanted = options[name]["autoscaling_config"]["min_replicas"]
            placed = [p for p in pids if p in on_gpu]
            result["deployments"][name] = {"replicas": len(pids), "min_replicas": wanted, "pids": pids,
                                           "pids_on_gpu": placed, "gpu_mib": [on_gpu[p] for p in placed],
                                           "providers": sorted(providers)}
            ok = ok and len(pids) >= wanted and len(placed) == len(pids) and all(p[0] == "CUDAExecutionProvider" for p in providers)
        if on_gpu and not any(p in on_gpu for d in result["deployments"].values() for p in d["pids"]):
            result["note"] = "nvidia-smi lists PIDs of another PID namespace (container): compare counts by hand"
        result["ok"] = ok
        return result
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(data_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-check", "--dry-run", dest="cpu_check", action="store_true",
                        help="run every step without CUDA (CPU EP, CPU faiss stand-in, no serve start)")
    parser.add_argument("--models", help="pack directory when antelopev2 is not in ~/.insightface (default: shared pack)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing window per throughput figure")
    parser.add_argument("--skip", nargs="*", default=[], choices=["parity", "faiss", "embed", "iresnet100", "serve"])
    ns = parser.parse_args(argv)
    began = time.perf_counter()
    report: dict = {"mode": "cpu-check" if ns.cpu_check else "gpu"}
    report["install"] = check_install(ns.cpu_check)
    print(f"install: {report['install']}", file=sys.stderr, flush=True)
    pack = choose_pack(ns.models)
    steps = {
        "parity": lambda: check_parity(pack, ns.cpu_check),
        "faiss": lambda: check_faiss(ns.cpu_check),
        "embed": lambda: check_embed(pack, ns.cpu_check, ns.seconds),
        "iresnet100": lambda: check_iresnet(ns.cpu_check, ns.seconds),
        "serve": (lambda: {"skipped": "needs a GPU", "ok": True}) if ns.cpu_check else (lambda: check_serve(str(pack.root), 120)),
    }
    for name, step in steps.items():
        if name in ns.skip:
            continue
        started = time.perf_counter()
        try:
            report[name] = step()
        except Exception as exc:  # one failed step must not hide the others' figures
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        report[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: {report[name]}", file=sys.stderr, flush=True)
    report["ok"] = all(v["ok"] for v in report.values() if isinstance(v, dict))
    report["total_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
