"""Driver for tests/test_multinode.py: runs configs/cluster.yaml on a two-raylet cluster the test started.

Runs as its own process (env RAY_ADDRESS, RAY_AUTH_MODE=token, SECUREGATE_MODELS), so the pytest
process's own Ray session is never touched. It talks to the test over stdin/stdout: every result is one
line `SGRESULT <json>` on stdout.

  1. deploys the app from the config, one replica per deployment, and reports every replica's node;
  2. creates a tenant and enrols real photos (HTTP and handle), reports where the shard actor lives;
     while this runs the head's whole `securegate_index` capacity is held by a placeholder, so the
     shard actor must start on the worker (the node the test can kill without killing the GCS);
  3. releases the placeholder; creates a SHARDED tenant (shards: 2), whose shard actors spread over the two nodes
     (SPREAD, tenancy/placement.py), enrols the same photos and reports where each shard runs
     (GET /v1/admin/tenants/{id}) and its full search answers;
  4. holds every free `securegate_index` slot of the head (no headroom left), says "ready_to_kill" and waits for
     the test to write "killed"; then a search of the sharded tenant and a write to the unsharded one answer 503
     (after `restart_wait_s`), not hang; then it frees the head;
  5. waits until both tenants answer again and reports where they live now and what they still hold.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

INDEX_RESOURCE = "securegate_index"
HEAL_DEADLINE_S = 60
# How long a call waits for a shard actor with no process before its 503 (tenancy.restart_wait_s; 20 s shipped).
RESTART_WAIT_S = 4.0


def emit(phase: str, **payload) -> None:
    print("SGRESULT " + json.dumps({"phase": phase, **payload}), flush=True)


def wait_for_nodes(ray, count: int, timeout_s: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        if len(alive) >= count or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def wait_for_index_slots(ray, count: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get(INDEX_RESOURCE, 0) < count and time.monotonic() < deadline:
        time.sleep(0.2)


def replica_nodes(ray, app_name: str) -> dict[str, list[str]]:
    """{deployment: [node id of each replica]}: asked inside each replica process (no dashboard needed)."""
    out: dict[str, list[str]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"]
        if entry["namespace"] != "serve" or not name.startswith(f"SERVE_REPLICA::{app_name}#"):
            continue
        deployment = name.split("#")[1]
        actor = ray.get_actor(name, namespace="serve")
        node = ray.get(actor.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id()), timeout=60)
        out.setdefault(deployment, []).append(node)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--faces", required=True, help="the shared faces/identities directory")
    ns = parser.parse_args()

    import httpx
    import ray
    from ray import serve
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from graph import bind_app
    from cli.serve import APP_NAME, load_serve_config
    from securegate.errors import ApiError

    ray.init(log_to_driver=False)  # address from RAY_ADDRESS: the test's head node
    nodes = wait_for_nodes(ray, 2)
    head = next(n for n in nodes if "node:__internal_head__" in n["Resources"])
    emit("nodes", driver_node=ray.get_runtime_context().get_node_id(),
         nodes={n["NodeID"]: {"resources": n["Resources"], "raylet_socket": n["RayletSocketName"],
                               "head": n is head} for n in nodes})

    # ---- 1. the config, as an operator deploys it, with the test's data dir and one replica each -----------
    args, options, _ = load_serve_config(ns.config)
    args["data_dir"] = ns.data_dir
    # No KMS here: the local root-key provider (in data_dir) stands in for the config's AWS KMS.
    args["keys"] = {"provider": "local"}
    args["tenancy"] = {**args["tenancy"], "restart_wait_s": RESTART_WAIT_S}
    for opts in options.values():
        if "autoscaling_config" in opts:  # 2 cores: one replica each; placement is what is tested
            opts["autoscaling_config"] = {**opts["autoscaling_config"], "min_replicas": 1, "max_replicas": 1}
    # Both raylets share this host (and so the HTTP port): one proxy, on the head.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": ns.http_port})
    started = time.monotonic()
    ingress = serve.run(bind_app(args, options), name=APP_NAME, route_prefix="/")
    status = serve.status().applications[APP_NAME].deployments
    emit("deployed", deploy_s=round(time.monotonic() - started, 1),
         options={name: opts.get("ray_actor_options", {}) for name, opts in options.items()},
         shard_actor_options=args["tenancy"]["shard_actor_options"],
         running={name: d.replica_states.get("RUNNING", 0) for name, d in status.items()},
         replicas=replica_nodes(ray, APP_NAME))

    # ---- 2. a tenant, faces enrolled through HTTP and the handle -------------------------------------------
    head_index = head["Resources"][INDEX_RESOURCE]
    placeholder = ray.remote(num_cpus=0)(Placeholder).options(
        resources={INDEX_RESOURCE: head_index},
        scheduling_strategy=NodeAffinitySchedulingStrategy(head["NodeID"], soft=False)).remote()
    ray.get(placeholder.node.remote(), timeout=60)

    photos = {p.name: sorted(q for q in p.iterdir() if q.is_file()) for p in sorted(Path(ns.faces).iterdir()) if p.is_dir()}
    admin = {"Authorization": "Bearer " + (Path(ns.data_dir) / "admin_token").read_text().strip()}
    http = httpx.Client(base_url=f"http://127.0.0.1:{ns.http_port}", timeout=120)
    created = http.post("/v1/tenants", json={"name": "multinode"}, headers=admin)
    created.raise_for_status()
    tenant_id, api_key = created.json()["tenant_id"], created.json()["api_key"]
    tenant_auth = {"Authorization": f"Bearer {api_key}"}

    enrolled: dict[str, dict] = {}  # identity -> {person_id, face_ids (acknowledged), probe}
    for i, (identity, files) in enumerate(photos.items()):
        refs, probe = [files[0], *files[2:]], files[1]  # every photo but the second is enrolled
        via_http = i % 2 == 0
        if via_http:
            response = http.post("/v1/persons", json={"external_id": identity}, headers=tenant_auth)
            response.raise_for_status()
            person_id = response.json()["person_id"]
        else:
            person_id = ingress.create_person.remote(api_key, external_id=identity).result(timeout_s=120)["person_id"]
        face_ids = []
        for ref in refs:
            if via_http:
                response = http.post(f"/v1/persons/{person_id}/faces", headers=tenant_auth,
                                     json={"image": base64.b64encode(ref.read_bytes()).decode()})
                response.raise_for_status()
                face_ids.append(response.json()["face_id"])
            else:
                face_ids.append(ingress.enrol_face.remote(api_key, person_id, ref.read_bytes()).result(timeout_s=120)["face_id"])
        enrolled[identity] = {"person_id": person_id, "face_ids": face_ids, "probe": str(probe)}

    supervisor = serve.get_deployment_handle("TenantSupervisor", app_name=APP_NAME)
    tenant = supervisor.authenticate.remote(api_key).result(timeout_s=60)
    before = supervisor.tenant_info.remote(tenant.tenant_id).result(timeout_s=60)
    found_before = {identity: top_match(ingress.search.remote(api_key, Path(e["probe"]).read_bytes()).result(timeout_s=120))
                    for identity, e in enrolled.items()}
    emit("enrolled", tenant_id=tenant_id, enrolled=enrolled, info=before, found=found_before)

    # ---- 3. the head may host shard actors again: a sharded tenant spreads over both nodes -------------------------
    ray.kill(placeholder)
    wait_for_index_slots(ray, 2 * head_index - 1)  # the placeholder's slots are back (the worker holds one actor)
    sharded = http.post("/v1/tenants", json={"name": "multinode-sharded", "settings": {"shards": 2}}, headers=admin)
    sharded.raise_for_status()
    sharded_id, sharded_key = sharded.json()["tenant_id"], sharded.json()["api_key"]
    sharded_faces = {}
    for identity, e in enrolled.items():
        files = photos[identity]
        person_id = ingress.create_person.remote(sharded_key, external_id=identity).result(timeout_s=120)["person_id"]
        sharded_faces[person_id] = sorted(ingress.enrol_face.remote(sharded_key, person_id, ref.read_bytes()).result(timeout_s=120)["face_id"]
                                          for ref in [files[0], *files[2:]])
    sharded_placement = http.get(f"/v1/admin/tenants/{sharded_id}", headers=admin).json()
    sharded_answers = {identity: ingress.search.remote(sharded_key, Path(e["probe"]).read_bytes(), threshold=-1.0, top_k=5).result(timeout_s=120)
                       for identity, e in enrolled.items()}
    # the unsharded tenant holds the same photos: its answers are what the merge of the shards must equal
    reference = {identity: ingress.search.remote(api_key, Path(e["probe"]).read_bytes(), threshold=-1.0, top_k=5).result(timeout_s=120)
                 for identity, e in enrolled.items()}
    sharded_info = supervisor.tenant_info.remote(sharded_id).result(timeout_s=60)
    emit("sharded", tenant_id=sharded_id, placement=sharded_placement, faces=sharded_faces, answers=sharded_answers,
         reference=reference,
         shard_faces=[i["faces"] for i in sharded_info["shard_info"]])

    # ---- 4. no headroom on the head, the test kills the worker: 503s, not hangs; then room again -------------------
    on_head = sum(1 for s in sharded_placement["shards"] if s["node_id"] == head["NodeID"])
    full = ray.remote(num_cpus=0)(Placeholder).options(
        resources={INDEX_RESOURCE: head_index - on_head},
        scheduling_strategy=NodeAffinitySchedulingStrategy(head["NodeID"], soft=False)).remote()
    ray.get(full.node.remote(), timeout=60)
    emit("ready_to_kill")
    if sys.stdin.readline().strip() != "killed":
        return 2
    killed_at = time.monotonic()
    probe = next(iter(enrolled.values()))["probe"]
    refused_search = timed(lambda: http.post("/v1/search", headers={"Authorization": f"Bearer {sharded_key}"},
                                             json={"image": base64.b64encode(Path(probe).read_bytes()).decode()}), killed_at)
    refused_write = timed(lambda: http.post("/v1/persons", json={"external_id": "written-while-down"},
                                            headers=tenant_auth), killed_at)
    down_placement = http.get(f"/v1/admin/tenants/{sharded_id}", headers=admin).json()
    ray.kill(full)
    freed_at = time.monotonic()
    emit("no_headroom", search=refused_search, write=refused_write, placement=down_placement)

    # ---- 4. heal: the tenant answers again, from the surviving node, with every acknowledged face ---------
    failures: dict[str, int] = {}
    first = next(iter(enrolled.values()))
    while True:
        try:
            first_search = ingress.search.remote(api_key, Path(first["probe"]).read_bytes()).result(timeout_s=20)
            break
        except Exception as exc:  # 503 unavailable while the node is declared dead and the actor restarts
            kind = f"{exc.code}" if isinstance(exc, ApiError) else type(exc).__name__
            failures[kind] = failures.get(kind, 0) + 1
            if time.monotonic() - freed_at > HEAL_DEADLINE_S:
                emit("healed", ok=False, failures=failures, error=repr(exc)[:500])
                return 1
            time.sleep(1.0)
    heal_s = round(time.monotonic() - freed_at, 1)
    after = supervisor.tenant_info.remote(tenant.tenant_id).result(timeout_s=60)
    listed = ingress.list_persons.remote(api_key, limit=1000).result(timeout_s=60)
    persons = {p["person_id"]: ingress.get_person.remote(api_key, p["person_id"]).result(timeout_s=60)
               for p in listed["persons"]}
    found = {identity: top_match(ingress.search.remote(api_key, Path(e["probe"]).read_bytes()).result(timeout_s=120))
             for identity, e in enrolled.items()}
    http_search = http.post("/v1/search", headers=tenant_auth,
                            json={"image": base64.b64encode(Path(first["probe"]).read_bytes()).decode()})
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    sharded_after = {identity: retried(lambda e=e: ingress.search.remote(sharded_key, Path(e["probe"]).read_bytes(), threshold=-1.0, top_k=5)
                                       .result(timeout_s=60), failures, freed_at + HEAL_DEADLINE_S)
                     for identity, e in enrolled.items()}
    emit("healed_sharded", placement=http.get(f"/v1/admin/tenants/{sharded_id}", headers=admin).json(),
         answers=sharded_after)
    emit("healed", ok=True, heal_s=heal_s, failures=failures, info=after, alive_nodes=alive,
         first_search=top_match(first_search), found=found,
         http_search={"status": http_search.status_code, "match": top_match(http_search.json()) if http_search.is_success else None},
         listed={p["person_id"]: p["external_id"] for p in listed["persons"]}, next_cursor=listed["next_cursor"],
         faces={pid: sorted(f["face_id"] for f in p["faces"]) for pid, p in persons.items()},
         replicas=replica_nodes(ray, APP_NAME))
    http.close()
    serve.shutdown()
    ray.shutdown()
    return 0


class Placeholder:
    """Holds a node's index capacity while the tenant activates (see the module doc)."""

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def retried(call, failures: dict, deadline: float):
    """`call()` until it answers: 503s while a restarted shard starts on a busy host are counted in `failures`."""
    while True:
        try:
            return call()
        except Exception as exc:
            kind = getattr(exc, "code", None) or type(exc).__name__
            failures[kind] = failures.get(kind, 0) + 1
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def timed(request, since: float) -> dict:
    """An HTTP call's status, error code and when it answered (seconds after `since`)."""
    response = request()
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return {"status": response.status_code, "code": (body.get("error") or {}).get("code"),
            "message": (body.get("error") or {}).get("message"), "after_s": round(time.monotonic() - since, 1)}


def top_match(result: dict) -> str | None:
    """external_id of the best match of the (single) face in a search answer, None when nothing matched."""
    faces = result.get("faces") or []
    if not faces or not faces[0]["matches"]:
        return None
    return faces[0]["matches"][0]["external_id"]


if __name__ == "__main__":
    sys.exit(main())
