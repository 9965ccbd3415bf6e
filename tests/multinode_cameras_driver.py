"""Driver for tests/test_multinode_cameras.py: a camera on a two-raylet cluster whose node is then lost.

Runs as its own process (env RAY_ADDRESS, RAY_AUTH_MODE=token, SECUREGATE_MODELS) against the cluster the test
started; every result is one line `SGRESULT <json>` on stdout, and the test answers on stdin.

  1. deploys configs/cluster.yaml, one replica per deployment; the worker's `securegate_models` capacity is
     held by a placeholder meanwhile, so the Detector and Embedder land on the head (the node that stays);
  2. a tenant with kit_harington enrolled; the "hall" clip (kit, then a stranger) as a looping file camera. The
     head's free `securegate_models` slots are held while the camera starts, so its worker must go to the other
     model node (the worker raylet); reports where it runs once its events flow;
  3. releases the placeholder, says "ready_to_kill" and waits for the test to write "killed";
  4. waits until the camera's worker runs again (restarted by Ray on the surviving model node, resumed by the
     StreamSupervisor) and new events arrive; reports where, how long it took and what the camera showed meanwhile.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.multinode_driver import Placeholder, emit, replica_nodes, wait_for_nodes  # noqa: E402

MODELS_RESOURCE = "securegate_models"
RESUME_DEADLINE_S = 90


def hold(ray, node_id: str, amount: float):
    """An actor holding `amount` of the node's model slots (so nothing else that needs them lands there)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    placeholder = ray.remote(num_cpus=0)(Placeholder).options(
        resources={MODELS_RESOURCE: amount}, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    ray.get(placeholder.node.remote(), timeout=60)
    return placeholder


def where(ray, actor) -> dict:
    """The node and process an actor runs in, asked inside it."""
    import os

    return ray.get(actor.__ray_call__.remote(lambda _self: {"node_id": ray.get_runtime_context().get_node_id(),
                                                             "pid": os.getpid()}), timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--faces", required=True, help="the shared faces directory")
    parser.add_argument("--video", required=True, help="the hall clip (streams.testmedia), copied into data_dir/media")
    ns = parser.parse_args()

    import httpx
    import ray
    from ray import serve

    from cli.serve import APP_NAME, load_serve_config
    from graph import bind_app
    from streams import testmedia
    from streams.worker import NAMESPACE, worker_name

    ray.init(log_to_driver=False)
    nodes = wait_for_nodes(ray, 2)
    head = next(n for n in nodes if "node:__internal_head__" in n["Resources"])
    other = next(n for n in nodes if n is not head)
    emit("nodes", head=head["NodeID"], worker=other["NodeID"],
         resources={n["NodeID"]: n["Resources"] for n in nodes})

    # ---- 1. the config as an operator deploys it; the models' replicas on the head ---------------------------
    args, options, _ = load_serve_config(ns.config)
    args["data_dir"] = ns.data_dir
    args["keys"] = {"provider": "local"}  # no KMS here: the local root key stands in for the config's AWS KMS
    for opts in options.values():
        if "autoscaling_config" in opts:  # 2 cores: one replica each
            opts["autoscaling_config"] = {**opts["autoscaling_config"], "min_replicas": 1, "max_replicas": 1}
    away = hold(ray, other["NodeID"], other["Resources"][MODELS_RESOURCE])
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": ns.http_port})
    ingress_started = time.monotonic()
    serve.run(bind_app(args, options), name=APP_NAME, route_prefix="/")
    replicas = replica_nodes(ray, APP_NAME)
    ray.kill(away)
    emit("deployed", deploy_s=round(time.monotonic() - ingress_started, 1), replicas=replicas,
         worker_options=args["streams"]["worker_options"])

    # ---- 2. a tenant, a person, a looping file camera on the worker node ------------------------------------------
    http = httpx.Client(base_url=f"http://127.0.0.1:{ns.http_port}", timeout=120)
    admin = {"Authorization": "Bearer " + (Path(ns.data_dir) / "admin_token").read_text().strip()}
    created = http.post("/v1/tenants", json={"name": "cameras-multinode"}, headers=admin)
    created.raise_for_status()
    auth = {"Authorization": f"Bearer {created.json()['api_key']}"}
    tenant_id = created.json()["tenant_id"]
    kit = http.post("/v1/persons", json={"external_id": "kit_harington"}, headers=auth)
    kit.raise_for_status()
    photo = testmedia.enrolment_photos(ns.faces)["kit_harington"]
    http.post(f"/v1/persons/{kit.json()['person_id']}/faces", json={"image": base64.b64encode(photo.read_bytes()).decode()},
              headers=auth).raise_for_status()
    media = Path(ns.data_dir) / "media"
    media.mkdir(exist_ok=True)
    video = Path(shutil.copy(ns.video, media / "hall.mp4"))

    # The head's model slots in use are its Detector and Embedder replicas' (one each): the rest are held.
    used_on_head = sum(options[name]["ray_actor_options"]["resources"][MODELS_RESOURCE]
                       for name in ("Detector", "Embedder") if replicas.get(name) == [head["NodeID"]])
    here = hold(ray, head["NodeID"], head["Resources"][MODELS_RESOURCE] - used_on_head)
    stream = http.post("/v1/streams", json={"name": "hall", "url": str(video), "fps": 5, "loop": True, "cooldown_s": 0},
                       headers=auth)
    stream.raise_for_status()
    stream_id = stream.json()["stream_id"]
    worker = ray.get_actor(worker_name(tenant_id, stream_id), namespace=NAMESPACE)
    before = where(ray, worker)

    def events(since: int = 0) -> list[dict]:
        r = http.get("/v1/events", params={"camera": stream_id, "since": since, "limit": 1000}, headers=auth)
        r.raise_for_status()
        return r.json()["events"]

    deadline = time.monotonic() + RESUME_DEADLINE_S
    while not any(e["kind"] == "person_seen" for e in events()) and time.monotonic() < deadline:
        time.sleep(0.5)
    seen = events()
    emit("camera_running", tenant_id=tenant_id, stream_id=stream_id, worker=before, events=seen,
         status=http.get(f"/v1/streams/{stream_id}", headers=auth).json()["status"])

    # ---- 3. the head may take cameras again; the test kills the worker node -----------------------------------------
    ray.kill(here)
    emit("ready_to_kill")
    if sys.stdin.readline().strip() != "killed":
        return 2
    killed_at = time.monotonic()
    last_seq = max(e["seq"] for e in seen)

    # ---- 4. the camera resumes on the surviving model node and its events flow again --------------------------------
    states: list[str] = []
    after, fresh = None, []
    while time.monotonic() - killed_at < RESUME_DEADLINE_S:
        status = http.get(f"/v1/streams/{stream_id}", headers=auth)
        if status.is_success and (not states or states[-1] != status.json()["status"]["state"]):
            states.append(status.json()["status"]["state"])
        fresh = events(last_seq)
        if any(e["kind"] == "person_seen" for e in fresh):
            try:
                after = where(ray, worker)
                break
            except Exception:  # the handle answers once the restarted actor does
                pass
        time.sleep(0.5)
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    emit("resumed", ok=after is not None, resume_s=round(time.monotonic() - killed_at, 1), worker=after, events=fresh,
         states=states, status=http.get(f"/v1/streams/{stream_id}", headers=auth).json()["status"], alive_nodes=alive,
         replicas=replica_nodes(ray, APP_NAME))
    http.close()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
