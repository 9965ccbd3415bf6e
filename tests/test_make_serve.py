"""The README's first command as a newcomer runs it: `make serve` in a fresh copy of the tree, with `../shared`
beside it, runs its set-up (the Makefile's pip steps, an editable install of the copy) and serves.

The copy's venv is seeded with a path to this venv's installed dependencies, so the test measures the Makefile
and the package rather than the registries' download speed (a full install took 9 min on a loaded host); CI's
own `make test` on a fresh machine is the full install. pip still asks the registries (it upgrades itself and
builds the editable wheel in an isolated environment): the test needs the network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED, free_port
from tests.test_wheel import tree_copy, wait_ready

pytestmark = [pytest.mark.network, pytest.mark.own_cluster, pytest.mark.timeout(1200)]


def test_make_serve_from_a_fresh_copy_serves(tmp_path):
    workspace = tmp_path / "newcomer"
    repo = tree_copy(workspace / "securegate")
    (workspace / "shared").symlink_to(SHARED.resolve())
    subprocess.run([sys.executable, "-m", "venv", str(repo / ".venv")], check=True, timeout=300)
    site = subprocess.run([repo / ".venv" / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "securegate_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "RAY_", "VIRTUAL_ENV", "SECUREGATE"))}
    env |= {"SECUREGATE_MODELS": "../shared/models", "RAY_TMPDIR": tempfile.mkdtemp(prefix="sgm", dir="/tmp"),
            "PATH": ":".join(p for p in env.get("PATH", "").split(":") if "/.venv/" not in p)}
    proc = subprocess.Popen(["make", "serve", f"ARGS=--port {port} --data-dir {tmp_path / 'data'}"], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            wait_ready(http, proc, timeout_s=900)  # the venv's installation is most of it
            assert http.get("/v1/healthz").status_code == 200
    finally:
        # SIGTERM to the server itself, as an operator's supervisor sends it: it shuts down and make exits 0.
        server = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", "bin/securegate serve"], capture_output=True,
                                text=True).stdout.split()
        for pid in server:
            os.kill(int(pid), signal.SIGTERM)
        try:
            out = proc.communicate(timeout=180)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out = proc.communicate()[0]
    assert server and proc.returncode == 0, out[-3000:]
    # The copy's own code served: its editable install points at the copy, not at this checkout.
    where = subprocess.run([repo / ".venv" / "bin" / "python", "-c", "import vision; print(vision.__file__)"], cwd=workspace,
                           capture_output=True, text=True, env=env).stdout.strip()
    assert Path(where).is_relative_to(repo), where
