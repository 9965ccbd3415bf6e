"""The package is the product: the built wheel, installed where the checkout is not on the path, serves.

A fresh venv gets the wheel (built from a copy of the tree, which is then deleted) and, for its dependencies, a
path to this venv's site-packages (not processed as a site dir, so the checkout's editable-install hook never
loads: nothing of the repository is importable). `securegate` then runs from an empty temporary directory, and
its Ray workers start from that venv's Python, importing the installed modules.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.timeout(900)


def tree_copy(dest: Path) -> Path:
    """The working tree as git sees it (tracked and untracked-not-ignored files), copied to dest."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """{python, securegate, env, cwd}: a venv holding the built wheel, an empty working directory."""
    root = tmp_path_factory.mktemp("wheel")
    src = tree_copy(root / "src")
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    shutil.rmtree(src)  # the only sources left are the wheel's
    (wheel,) = dist.glob("securegate-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "securegate_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    cwd = root / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RAY_", "VIRTUAL_ENV"))}
    # A Ray of its own (its temp root holds the "current cluster" file that ray.init() would otherwise join).
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="sgw", dir="/tmp")
    yield {"python": python, "securegate": venv / "bin" / "securegate", "env": env, "cwd": cwd, "site": site}
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)


def test_installed_modules_come_from_the_wheel(installed):
    """Every top-level module the service imports resolves inside the venv, none from the checkout."""
    code = ("import json, importlib; mods = ['graph', 'cli', 'deployments', 'deployments.routes', 'vision', 'securegate', "
            "'tenancy', 'streams', 'kms', 'kms.providers', 'evaluation', 'console']; "
            "print(json.dumps({m: importlib.import_module(m).__file__ for m in mods}))")
    run = subprocess.run([installed["python"], "-c", code], cwd=installed["cwd"], env=installed["env"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    for module, path in json.loads(run.stdout).items():
        assert Path(path).is_relative_to(installed["site"]), (module, path)
    assert (installed["site"] / "console" / "index.html").is_file()  # the console's files are package data


def test_import_paths_of_the_shipped_configs_resolve_from_the_wheel(installed):
    """What a Serve config names (configs/*.yaml, the KubeRay manifest's serveConfigV2) is importable from the
    installed package, resolved the way Serve resolves it."""
    import yaml

    configs = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "configs").glob("*.yaml"))]
    configs.append(yaml.safe_load(yaml.safe_load((REPO / "deploy/kuberay/rayservice.yaml").read_text())["spec"]["serveConfigV2"]))
    paths = sorted({app["import_path"] for c in configs for app in c["applications"]})
    code = ("import sys; from ray._common.utils import import_attr; "
            "[print(p, callable(import_attr(p)), import_attr(p).__module__) for p in sys.argv[1:]]")
    run = subprocess.run([installed["python"], "-c", code, *paths], cwd=installed["cwd"], env=installed["env"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [w for p in paths for w in (p, "True", p.split(":")[0])], run.stdout


def test_installed_securegate_models_runs_from_another_directory(installed, models_dir):
    run = subprocess.run([installed["securegate"], "models", "--models", str(models_dir)], cwd=installed["cwd"],
                         env=installed["env"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout)
    assert (info["detector"], info["recognizer"], info["dim"]) == ("scrfd_2.5g_bnkps.onnx",
                                                                  "mobilefacenet_arcface_w128.onnx", 128)


@pytest.mark.own_cluster
def test_installed_securegate_serve_answers_a_search(installed, models_dir, identity_photos, tmp_path):
    """`securegate serve` from the wheel: ready, a tenant made with the generated admin token, a face enrolled
    and found again with another photo of the same person; the console's files are served."""
    port, data_dir = free_port(), tmp_path / "data"
    proc = subprocess.Popen([installed["securegate"], "serve", "--port", str(port), "--models", str(models_dir),
                             "--data-dir", str(data_dir)], cwd=installed["cwd"], env=installed["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as http:
            wait_ready(http, proc)
            admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}
            key = http.post("/v1/tenants", json={"name": "wheel"}, headers=admin).raise_for_status().json()["api_key"]
            tenant = {"Authorization": f"Bearer {key}"}
            person = http.post("/v1/persons", json={"external_id": "obama"}, headers=tenant).raise_for_status().json()
            first, second = identity_photos["obama"][:2]
            http.post(f"/v1/persons/{person['person_id']}/faces", json={"image": b64(first)},
                      headers=tenant).raise_for_status()
            found = http.post("/v1/search", json={"image": b64(second)}, headers=tenant).raise_for_status().json()
            assert [m["external_id"] for m in found["faces"][0]["matches"]] == ["obama"], found
            assert "<html" in http.get("/console/").raise_for_status().text.lower()
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out[-3000:]


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM to the process (it shuts Serve and its Ray down); what is left of its group is killed after 120 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0]


def wait_ready(http: httpx.Client, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"securegate serve exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        try:
            if http.get("/v1/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail("securegate serve was not ready in time")


def b64(path: Path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()
