"""configs/cluster.yaml on a real two-raylet cluster: placement by custom resources, a sharded tenant's shards spread
over the nodes, a node loss with no room left answers 503 (not a hang), and then heals with exact answers.

The cluster is its own (two `ray start` processes with their own temp dirs, free ports, token auth),
driven by tests/multinode_driver.py in a subprocess, so the session's in-process cluster is untouched.
Every process the cluster starts is found by PID (its command line names our temp dir, or it descends
from one that does) and stopped by PID in `finally`, whatever happened.

head   : securegate_api + securegate_models + securegate_index  (GCS, Serve, every replica, a shard)
worker : securegate_index                                         (the tenant's shard actor, a shard; then killed)
"""

from __future__ import annotations

import json
import os
import queue
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
from tests.multinode_driver import top_match
from tests.processes import kill_pids, process_tree, stop_cluster

CONFIG = REPO / "configs" / "cluster.yaml"
RAY = str(Path(sys.executable).parent / "ray")
HEAD_RESOURCES = {"securegate_api": 100, "securegate_models": 100, "securegate_index": 100}
WORKER_RESOURCES = {"securegate_index": 100}
# The head runs every replica (4 CPUs' worth in cluster.yaml) and must still fit the shard actor that
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


def cluster_env(models_dir) -> tuple[dict, dict]:
    """(the nodes' environment, the driver's): token auth, fast node-death detection, the models, this checkout."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(FAST_HEALTH_CHECKS, RAY_AUTH_MODE="token", SECUREGATE_MODELS=str(models_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    # The nodes run Serve's throughput-optimised data path as cluster.yaml tells operators to; the driver calls
    # handles synchronously (`.result()`), which that mode refuses in the caller's own process.
    env.update(SERVE_ENVIRONMENT)
    return env, {k: v for k, v in env.items() if k not in SERVE_ENVIRONMENT}


def start_nodes(head_dir: Path, worker_dir: Path, env: dict, worker_resources: dict, worker_cpus: int) -> str:
    """The head (HEAD_RESOURCES) and one worker raylet; returns the cluster's address."""
    port = free_port()
    ray_start(["--head", "--port", str(port), "--include-dashboard=false", "--ray-client-server-port", str(free_port()),
               *node_args(head_dir, HEAD_RESOURCES, HEAD_CPUS)], env)
    address_file = head_dir / "ray_current_cluster"
    address = address_file.read_text().strip() if address_file.exists() else f"127.0.0.1:{port}"
    ray_start(["--address", address, *node_args(worker_dir, worker_resources, worker_cpus)], env)
    return address


def kill_worker_node(driver: Driver, worker_dir: Path, inside: int, budget: float) -> None:
    """Once the driver is ready: SIGKILL the worker raylet and everything it started (among them `inside`, the
    process of the actor under test), then tell the driver."""
    driver.result("ready_to_kill", budget)
    worker_pids = process_tree(str(worker_dir))
    assert inside in worker_pids, "the actor under test does not run under the worker raylet"
    assert kill_pids(worker_pids, signal.SIGKILL, 10) == set()
    assert process_tree(str(worker_dir)) == set()
    driver.send("killed")


def ranked(answer: dict) -> list[list[tuple]]:
    """A search answer without the tenant's own ids: per face, (external id, similarity) in rank order."""
    return [[(m["external_id"], m["similarity"]) for m in face["matches"]] for face in answer["faces"]]


# ------------------------------------------------------------------------------------------------ test
@pytest.mark.own_cluster
def test_cluster_config_places_by_resources_and_heals_a_lost_index_node(models_dir, faces_root, tmp_path):
    started = time.monotonic()
    config = yaml.safe_load(CONFIG.read_text())
    (app,) = config["applications"]
    required = {d["name"]: d.get("ray_actor_options", {}).get("resources", {}) for d in app["deployments"]}
    index_required = app["args"]["tenancy"]["shard_actor_options"]["resources"]
    # What the test relies on from the config: models and shard actors are placed by these resources.
    assert set(required["Detector"]) == set(required["Embedder"]) == {"securegate_models"}
    assert set(index_required) == {"securegate_index"}

    base = Path(tempfile.mkdtemp(prefix="sgmn-", dir="/tmp"))  # short: unix socket paths stay < 108 chars
    head_dir, worker_dir, data_dir = base / "h", base / "w", tmp_path / "data"
    env, driver_env = cluster_env(models_dir)
    driver = None
    try:
        address = start_nodes(head_dir, worker_dir, env, WORKER_RESOURCES, 4)

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
        assert deployed["shard_actor_options"]["resources"] == index_required

        # ---- a tenant with real faces; its shard actor on an index node (the worker, see the driver) -------
        enrolled = driver.result("enrolled", budget)
        identities = set(enrolled["enrolled"])
        assert len(identities) >= 5
        acknowledged = {e["person_id"]: sorted(e["face_ids"]) for e in enrolled["enrolled"].values()}
        assert enrolled["found"] == {i: i for i in identities}, enrolled["found"]
        before = enrolled["info"]
        assert before["faces"] == sum(map(len, acknowledged.values())) and before["persons"] == len(identities)
        assert before["placement"]["node_id"] == worker
        assert set(index_required) <= set(resources[worker])
        assert before["writer_epoch"] == 1  # the file's first owner (tenancy/fence.py)

        # ---- a sharded tenant: one shard per node (SPREAD), as the admin API reports it ------------------------------
        sharded = driver.result("sharded", budget)
        shards = sharded["placement"]["shards"]
        assert [s["shard"] for s in shards] == [0, 1] and all(s["state"] == "ALIVE" for s in shards), shards
        assert {s["node_id"] for s in shards} == {head, worker}, shards  # distinct nodes, both index nodes
        assert all(s["node_ip"] and s["pid"] for s in shards)
        assert min(sharded["shard_faces"]) > 0 and sum(sharded["shard_faces"]) == before["faces"]
        assert {i: top_match(a) for i, a in sharded["answers"].items()} == {i: i for i in identities}
        # Exact: the shards' merged answer is the unsharded tenant's (same photos): persons, order, similarities, for
        # the top 5 at threshold -1 (every person: each shard contributes, not only the best match's).
        assert {i: ranked(a) for i, a in sharded["answers"].items()} == {i: ranked(a) for i, a in sharded["reference"].items()}
        assert all(len(face) == len(identities) for a in sharded["answers"].values() for face in ranked(a))
        lost = next(s for s in shards if s["node_id"] == worker)

        # ---- kill the worker node with no room left on the head: 503s, not hangs ------------------------------------
        kill_worker_node(driver, worker_dir, before["placement"]["pid"], budget + 30)
        down = driver.result("no_headroom", budget + 60)
        for refused in (down["search"], down["write"]):
            assert refused["status"] == 503 and refused["code"] == "unavailable", down
            assert refused["after_s"] < 45, down  # node death noticed (~3 s) + restart_wait_s (4 s), on a busy host
        waiting = {s["shard"]: s for s in down["placement"]["shards"]}
        assert waiting[lost["shard"]]["state"] != "ALIVE" and waiting[lost["shard"]]["node_id"] is None, waiting

        sharded_healed = driver.result("healed_sharded", started + 290)
        healed = driver.result("healed", started + 290)
        assert healed["ok"], healed
        assert worker not in healed["alive_nodes"] and head in healed["alive_nodes"]
        after = healed["info"]
        assert after["placement"]["node_id"] == head, after["placement"]  # reactivated on the surviving node
        assert after["placement"]["pid"] != before["placement"]["pid"]
        assert after["writer_epoch"] == 2  # the restarted actor claimed the file: its predecessor could not write
        # The sharded tenant: the lost node's shard restarted on the head, every answer exactly as before.
        moved = {s["shard"]: s for s in sharded_healed["placement"]["shards"]}
        assert all(s["state"] == "ALIVE" and s["node_id"] == head for s in moved.values()), moved
        assert moved[lost["shard"]]["restarts"] >= 1 and moved[lost["shard"]]["pid"] != lost["pid"]
        assert sharded_healed["answers"] == sharded["answers"]
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
        print(f"multinode: deploy {deployed['deploy_s']} s, 503 after {down['search']['after_s']} s (search) / "
              f"{down['write']['after_s']} s (write), heal {healed['heal_s']} s after room was freed, "
              f"failures during heal {healed['failures']}, total {time.monotonic() - started:.0f} s")
    finally:
        failed = sys.exc_info()[0] is not None
        if driver is not None:
            driver.stop()
        leftover = stop_cluster(base, {"head": head_dir, "worker": worker_dir}, tmp_path if failed else None)
    assert not leftover, f"cluster processes survived cleanup: {sorted(leftover)}"
