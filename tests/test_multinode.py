"""configs/cluster.yaml on a real two-raylet cluster: placement by custom resources, and a node loss heals.

The cluster is its own (two `ray start` processes with their own temp dirs, free ports, token auth),
driven by tests/multinode_driver.py in a subprocess, so the session's in-process cluster is untouched.
Every process the cluster starts is found by PID (its command line names our temp dir, or it descends
from one that does) and stopped by PID in `finally`, whatever happened.

head   : securegate_api + securegate_models + securegate_index  (GCS, Serve, every replica)
worker : securegate_index                                         (the tenant's index actor, then killed)
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from cli.serve import SERVE_ENVIRONMENT
from tests.conftest import REPO, free_port
from tests.processes import kill_pids, process_tree, stop_tree

CONFIG = REPO / "configs" / "cluster.yaml"
RAY = str(Path(sys.executable).parent / "ray")
HEAD_RESOURCES = {"securegate_api": 100, "securegate_models": 100, "securegate_index": 100}
WORKER_RESOURCES = {"securegate_index": 100}
# The head runs every replica (4 CPUs' worth in cluster.yaml) and must still fit the index actor that
# fails over to it: a restarted actor waits for its whole request (slot AND CPUs) to be free.
HEAD_CPUS = 8
# GCS declares a silent raylet dead after period x threshold; the defaults take ~15 s, too long for the budget.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3"}


# ----------------------------------------------------------------------------------------- the driver
class Driver:
    """The driver subprocess: `SGRESULT <json>` lines from its stdout, by phase."""

    def __init__(self, cmd: list[str], env: dict, log_path: Path) -> None:
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            if line.startswith("SGRESULT "):
                self.lines.put(line)
        self.lines.put(None)

    def result(self, phase: str, deadline: float) -> dict:
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"driver gave no {phase!r} result in time; see {self.log.name}") from None
            if line is None:
                raise AssertionError(f"driver exited ({self.proc.wait()}) before {phase!r}; see {self.log.name}")
            result = json.loads(line[len("SGRESULT "):])
            if result["phase"] == phase:
                return result

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def ray_start(args: list[str], env: dict) -> None:
    done = subprocess.run([RAY, "start", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ray start {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def node_args(temp_dir: Path, resources: dict, cpus: int) -> list[str]:
    """Everything a node would otherwise take from a fixed default port is given a free one (other
    clusters run on this host). CPUs are logical: the two real cores do the work."""
    return ["--temp-dir", str(temp_dir), "--num-cpus", str(cpus), "--resources", json.dumps(resources),
            "--object-store-memory", str(100 * 1024 * 1024), "--disable-usage-stats",
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


# ------------------------------------------------------------------------------------------------ test
@pytest.mark.own_cluster
def test_cluster_config_places_by_resources_and_heals_a_lost_index_node(models_dir, faces_root, tmp_path):
    started = time.monotonic()
    config = yaml.safe_load(CONFIG.read_text())
    (app,) = config["applications"]
    required = {d["name"]: d.get("ray_actor_options", {}).get("resources", {}) for d in app["deployments"]}
    index_required = app["args"]["tenancy"]["index_actor_options"]["resources"]
    # What the test relies on from the config: models and index actors are placed by these resources.
    assert set(required["Detector"]) == set(required["Embedder"]) == {"securegate_models"}
    assert set(index_required) == {"securegate_index"}

    base = Path(tempfile.mkdtemp(prefix="sgmn-", dir="/tmp"))  # short: unix socket paths stay < 108 chars
    head_dir, worker_dir, data_dir = base / "h", base / "w", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(FAST_HEALTH_CHECKS, RAY_AUTH_MODE="token", SECUREGATE_MODELS=str(models_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    # The nodes run Serve's throughput-optimised data path as cluster.yaml tells operators to; the driver calls
    # handles synchronously (`.result()`), which that mode refuses in the caller's own process.
    env.update(SERVE_ENVIRONMENT)
    driver_env = {k: v for k, v in env.items() if k not in SERVE_ENVIRONMENT}
    port = free_port()
    driver = None
    try:
        ray_start(["--head", "--port", str(port), "--include-dashboard=false", "--ray-client-server-port", str(free_port()),
                   *node_args(head_dir, HEAD_RESOURCES, HEAD_CPUS)], env)
        address_file = head_dir / "ray_current_cluster"
        address = address_file.read_text().strip() if address_file.exists() else f"127.0.0.1:{port}"
        ray_start(["--address", address, *node_args(worker_dir, WORKER_RESOURCES, 4)], env)

        driver = Driver([sys.executable, str(REPO / "tests" / "multinode_driver.py"), "--config", str(CONFIG),
                         "--data-dir", str(data_dir), "--http-port", str(free_port()),
                         "--faces", str(faces_root / "identities")],
                        {**driver_env, "RAY_ADDRESS": address}, tmp_path / "driver.log")
        budget = started + 200

        nodes = driver.result("nodes", budget)
        by_dir = {("head" if f"{head_dir}/" in n["raylet_socket"] else "worker"): node_id
                  for node_id, n in nodes["nodes"].items()}
        head, worker = by_dir["head"], by_dir["worker"]
        assert nodes["nodes"][head]["head"] and nodes["driver_node"] == head
        resources = {node_id: n["resources"] for node_id, n in nodes["nodes"].items()}

        # ---- replicas where the config says -------------------------------------------------------------
        deployed = driver.result("deployed", budget)
        assert deployed["running"] == {name: 1 for name in required}, deployed
        assert set(deployed["replicas"]) == set(required), deployed["replicas"]
        for name, node_ids in deployed["replicas"].items():
            assert len(node_ids) == 1, (name, node_ids)
            assert deployed["options"][name].get("resources") == required[name]  # the config, unchanged
            for node_id in node_ids:
                assert set(required[name]) <= set(resources[node_id]), (name, node_id, resources[node_id])
        # Only the head offers the model resource: a Detector/Embedder anywhere else would be misplaced.
        assert deployed["replicas"]["Detector"] == deployed["replicas"]["Embedder"] == [head]
        assert deployed["index_actor_options"]["resources"] == index_required

        # ---- a tenant with real faces; its index actor on an index node (the worker, see the driver) -------
        enrolled = driver.result("enrolled", budget)
        identities = set(enrolled["enrolled"])
        assert len(identities) >= 5
        acknowledged = {e["person_id"]: sorted(e["face_ids"]) for e in enrolled["enrolled"].values()}
        assert enrolled["found"] == {i: i for i in identities}, enrolled["found"]
        before = enrolled["info"]
        assert before["faces"] == sum(map(len, acknowledged.values())) and before["persons"] == len(identities)
        assert before["placement"]["node_id"] == worker
        assert set(index_required) <= set(resources[worker])

        # ---- kill the worker node: SIGKILL its raylet and everything it started ------------------------------
        driver.result("ready_to_kill", budget)
        worker_pids = process_tree(str(worker_dir))
        assert before["placement"]["pid"] in worker_pids, "the index actor's process is not under the worker raylet"
        assert kill_pids(worker_pids, signal.SIGKILL, 10) == set()
        assert process_tree(str(worker_dir)) == set()
        driver.send("killed")

        healed = driver.result("healed", started + 230)
        assert healed["ok"], healed
        assert worker not in healed["alive_nodes"] and head in healed["alive_nodes"]
        after = healed["info"]
        assert after["placement"]["node_id"] == head, after["placement"]  # reactivated on the surviving node
        assert after["placement"]["pid"] != before["placement"]["pid"]
        # Every acknowledged face is still there: counts, person listing, each person's faces, search.
        assert after["faces"] == before["faces"] and after["persons"] == len(identities)
        assert healed["next_cursor"] is None
        assert healed["listed"] == {e["person_id"]: i for i, e in enrolled["enrolled"].items()}
        assert healed["faces"] == acknowledged
        assert healed["found"] == {i: i for i in identities}, healed["found"]
        assert healed["http_search"]["status"] == 200 and healed["http_search"]["match"] == healed["first_search"]
        assert healed["first_search"] == next(iter(enrolled["enrolled"]))
        # The rest of the app never left the head.
        assert all(node_ids == [head] for node_ids in healed["replicas"].values()), healed["replicas"]
        print(f"multinode: deploy {deployed['deploy_s']} s, heal {healed['heal_s']} s, "
              f"failures during heal {healed['failures']}, total {time.monotonic() - started:.0f} s")
    finally:
        failed = sys.exc_info()[0] is not None
        if driver is not None:
            driver.stop()
        stop_tree(str(base))
        if failed:  # keep the cluster's logs next to driver.log for the post-mortem
            for name, node_dir in (("head", head_dir), ("worker", worker_dir)):
                try:
                    shutil.copytree(node_dir / "session_latest" / "logs", tmp_path / f"{name}-logs",
                                    ignore_dangling_symlinks=True, dirs_exist_ok=True)
                except (OSError, shutil.Error):
                    pass
        leftover = process_tree(str(base))
        shutil.rmtree(base, ignore_errors=True)
    assert not leftover, f"cluster processes survived cleanup: {sorted(leftover)}"
