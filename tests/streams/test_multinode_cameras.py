"""Cameras across nodes (issue 26 §4): configs/cluster.yaml places each camera's stream worker on a model node
(`securegate_models`), and a camera whose node dies resumes on another, its events flowing again.

Two `ray start` raylets of our own (temp dirs, free ports, token auth), driven by tests/multinode_cameras_driver.py
in a subprocess, as tests/test_multinode.py does; every process they start is stopped by PID in `finally`.

head   : securegate_api + securegate_models + securegate_index  (GCS, Serve, every replica)
worker : securegate_models                                        (the camera's worker, then killed)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port
from tests.processes import stop_cluster
from tests.test_multinode import Driver, cluster_env, kill_worker_node, start_nodes

CONFIG = REPO / "configs" / "cluster.yaml"
WORKER_RESOURCES = {"securegate_models": 100}


@pytest.mark.own_cluster
def test_a_camera_whose_node_dies_resumes_on_another_model_node(models_dir, faces_root, videos, tmp_path):
    started = time.monotonic()
    app = yaml.safe_load(CONFIG.read_text())["applications"][0]
    worker_options = app["args"]["streams"]["worker_options"]
    assert set(worker_options["resources"]) == {"securegate_models"}  # what the test relies on from the config

    base = Path(tempfile.mkdtemp(prefix="sgcam-", dir="/tmp"))  # short: unix socket paths stay < 108 chars
    head_dir, worker_dir, data_dir = base / "h", base / "w", tmp_path / "data"
    env, driver_env = cluster_env(models_dir)
    driver = None
    try:
        address = start_nodes(head_dir, worker_dir, env, WORKER_RESOURCES, 2)

        driver = Driver([sys.executable, str(REPO / "tests" / "multinode_cameras_driver.py"), "--config", str(CONFIG),
                         "--data-dir", str(data_dir), "--http-port", str(free_port()), "--faces", str(faces_root),
                         "--video", str(videos["hall"])],
                        {**driver_env, "RAY_ADDRESS": address}, tmp_path / "driver.log")
        budget = started + 240

        nodes = driver.result("nodes", budget)
        head, worker = nodes["head"], nodes["worker"]
        deployed = driver.result("deployed", budget)
        assert deployed["worker_options"]["resources"] == worker_options["resources"]
        assert deployed["replicas"]["Detector"] == deployed["replicas"]["Embedder"] == [head], deployed["replicas"]

        # ---- the camera runs on the worker node, a model node, and its events flow ------------------------------
        running = driver.result("camera_running", budget)
        assert running["worker"]["node_id"] == worker
        assert "securegate_models" in nodes["resources"][worker]
        assert [e["external_id"] for e in running["events"] if e["kind"] == "person_seen"][:1] == ["kit_harington"], running
        assert running["status"]["state"] in ("connected", "running"), running["status"]

        # ---- kill the worker node: SIGKILL its raylet and everything it started ----------------------------------
        kill_worker_node(driver, worker_dir, running["worker"]["pid"], budget)

        resumed = driver.result("resumed", started + 330)
        assert resumed["ok"], resumed
        assert worker not in resumed["alive_nodes"] and head in resumed["alive_nodes"]
        # Restarted by Ray on the surviving model node (a new process), resumed by the StreamSupervisor's watch...
        assert resumed["worker"]["node_id"] == head and resumed["worker"]["pid"] != running["worker"]["pid"]
        # ...and the camera's events flow again: new ones, after every event before the loss, of the same camera.
        fresh = resumed["events"]
        assert fresh and min(e["seq"] for e in fresh) > max(e["seq"] for e in running["events"])
        assert "kit_harington" in {e.get("external_id") for e in fresh if e["kind"] == "person_seen"}
        assert {e["camera"] for e in fresh} == {running["stream_id"]}
        assert resumed["status"]["frames_processed"] > 0 and resumed["status"]["state"] in ("connected", "running")
        assert all(node_ids == [head] for node_ids in resumed["replicas"].values()), resumed["replicas"]
        print(f"cameras multinode: deploy {deployed['deploy_s']} s, resumed {resumed['resume_s']} s after the kill, "
              f"states seen {resumed['states']}, total {time.monotonic() - started:.0f} s")
    finally:
        failed = sys.exc_info()[0] is not None
        if driver is not None:
            driver.stop()
        leftover = stop_cluster(base, {"head": head_dir, "worker": worker_dir}, tmp_path if failed else None)
    assert not leftover, f"cluster processes survived cleanup: {sorted(leftover)}"
