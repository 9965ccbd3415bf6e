"""Install sets: the [gpu] extra resolves against PyPI on a machine without CUDA, and a venv gets one build.

The resolution test asks PyPI (the CI machine reaches it; nothing is installed: `pip install --dry-run`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]


def resolved_set(extra: str, tmp_path: Path) -> dict[str, dict]:
    """name -> metadata of every distribution `pip install '.[extra]'` would install into an empty venv."""
    report = tmp_path / f"{extra}.json"
    run = subprocess.run([*PIP, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                          f"{REPO}[{extra}]"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    return {item["metadata"]["name"].lower(): item["metadata"] for item in json.loads(report.read_text())["install"]}


@pytest.mark.network
def test_gpu_extra_resolves_against_pypi_without_cuda(tmp_path):
    """`.[gpu]` resolves here (no CUDA, no GPU): onnxruntime-gpu and faiss-gpu-cu12 with their CUDA runtime
    wheels, no faiss-cpu. The CPU onnxruntime is in the set only because insightface requires it; the
    Makefile's GPU install removes it afterwards (next test)."""
    names = resolved_set("gpu", tmp_path)
    assert {"onnxruntime-gpu", "faiss-gpu-cu12"} <= names.keys(), sorted(names)
    assert "faiss-cpu" not in names
    assert any(n.startswith("nvidia-cublas-cu12") for n in names), sorted(names)  # CUDA libraries as wheels
    if "onnxruntime" in names:
        wanting = [n for n, meta in names.items()
                   if any(r.split(";")[0].strip().lower() == "onnxruntime" for r in meta.get("requires_dist") or [])]
        assert wanting == ["insightface"], wanting


def test_make_setup_installs_exactly_one_build():
    """The CPU install asks for [cpu] only; GPU=1 asks for [gpu], removes the CPU onnxruntime insightface pulled
    in and lays onnxruntime-gpu's files down again (both builds own the `onnxruntime` module)."""
    def plan(*args: str) -> list[str]:
        out = subprocess.run(["make", "-n", "-B", "setup", "VENV=/nonexistent-venv", *args], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        return [line for line in out.splitlines() if "pip " in line]

    cpu = plan()
    assert any("install -q -e '.[cpu,test]'" in line for line in cpu), cpu
    assert not any("[gpu" in line or "onnxruntime-gpu==" in line for line in cpu), cpu
    gpu = plan("GPU=1")
    install = next(i for i, line in enumerate(gpu) if "install -q -e '.[gpu,test]'" in line)
    assert "uninstall -q -y onnxruntime" in gpu[install + 1], gpu
    assert "--force-reinstall --no-deps" in gpu[install + 2] and "onnxruntime-gpu==" in gpu[install + 2], gpu
