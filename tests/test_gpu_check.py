"""benchmarks/gpu.py's --cpu-check mode: everything the GPU host check does except CUDA, here on the CPU."""

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_iresnet100_graph_builds_runs_and_embeds_to_512():
    """arcface_torch's IResNet-100 as ONNX with random weights: 65.2M parameters like glintr100, [N,512] out,
    FP16 computing the same function as FP32 (run once each on the CPU EP)."""
    result = gpu_check.check_iresnet(cpu_check=True, seconds=0)
    for precision in ("fp32", "fp16"):
        assert result[precision]["output_shape"] == [1, 512], result
        assert result[precision]["finite"] and result[precision]["providers"] == ["CPUExecutionProvider"]
        assert 65_000_000 < result[precision]["params"] < 65_500_000, result[precision]["params"]
    assert result["fp16_vs_fp32_min_cosine"] > 0.999 and result["ok"]


def test_cpu_check_mode_runs_the_other_steps(capsys):
    """Install, parity, FAISS (a CPU flat index injected into FaceIndex's GPU path) and embed steps pass with
    the CPU EP; serve is skipped; one JSON line last."""
    assert gpu_check.main(["--cpu-check", "--skip", "iresnet100"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["mode"] == "cpu-check" and report["ok"]
    assert report["install"]["onnxruntime"] and len(report["install"]["onnxruntime"]) == 1
    assert report["faiss"]["faceindex_gpu_tier_equals_exact"] and report["faiss"]["topk_identical"]
    assert report["parity"]["max_abs_diff"] <= 1e-3
    assert {"batch_1_faces_per_s", "batch_32_faces_per_s", "batch_64_faces_per_s"} <= report["embed"].keys()
    assert report["serve"] == {"skipped": "needs a GPU", "ok": True, "seconds": 0.0}
