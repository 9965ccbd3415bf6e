"""Driver for tests/test_object_store_spill.py: a model migration on a Ray cluster whose object store spills
everything it holds, and a scan of every spilled file for the tenant's crop pixels and vectors.

Runs as its own process (the pytest process's Ray session cannot be restarted with another object store):

  1. starts a local Ray (address "local": never another helper's cluster) with a small object store, object
     spilling to `--spill-dir` and a spilling threshold of 0, so Ray spills every primary copy it holds as
     soon as it can (not only under memory pressure);
  2. a linker thread hard-links every file that appears under the spill dir into `kept/` at once: Ray deletes
     a spill file when its objects are freed, the link keeps its bytes for the scan;
  3. deploys the app (graph.bind_app) serving the shared pack and a renamed copy of it (tests/model_packs.py),
     enrols 240 faces with their crops kept into a tenant whose shard actor is made slow to take each call (a
     stand-in for a busy one: Ray's testing delay), and migrates it onto the renamed pack through the admin API;
  4. reads the tenant's kept crops and its new vectors back from its file with the real KeyService's keys,
     and reports in one line `SGRESULT <json>`: spill files seen, whether a marker object put with ray.put was
     found spilled (the scan can see what Ray spills), and which crops and vectors were found in clear.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's minimum is 75 MiB
FACES = 240
BUSY_US = 2_500_000  # how late the shard actor takes each call: longer than the spiller's period


def emit(**payload) -> None:
    print("SGRESULT " + json.dumps(payload), flush=True)


class Linker(threading.Thread):
    """Hard-links each new file under `spill_dir` into `kept` (same file system) every few milliseconds."""

    def __init__(self, spill_dir: Path, kept: Path) -> None:
        super().__init__(daemon=True)
        self.spill_dir, self.kept = spill_dir, kept
        self.seen: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sweep()
            time.sleep(0.002)

    def sweep(self) -> None:
        for root, _, files in os.walk(self.spill_dir):
            for name in files:
                path = os.path.join(root, name)
                if path in self.seen:
                    continue
                try:
                    os.link(path, self.kept / f"{len(self.seen):06d}-{name}")
                    self.seen.add(path)
                except FileNotFoundError:  # deleted before we got there: nothing to keep
                    pass


def found_in(blobs: list[bytes], needles: dict[str, bytes]) -> list[str]:
    return sorted(name for name, needle in needles.items() if any(needle in blob for blob in blobs))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spill-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--models", required=True)
    parser.add_argument("--photos", nargs="+", required=True, help="one-face photos to enrol")
    ns = parser.parse_args()

    import httpx
    import numpy as np
    import ray
    from ray import serve

    from cli.serve import start_ray
    from graph import bind_app
    from tenancy import operations as op
    from tenancy.actors import tenant_db_path
    from tenancy.store import TenantStore
    from tests.conftest import free_port
    from tests.model_packs import renamed_pack

    spill_dir, kept = Path(ns.spill_dir), Path(ns.spill_dir).parent / "kept"
    spill_dir.mkdir(parents=True, exist_ok=True)
    kept.mkdir(exist_ok=True)
    linker = Linker(spill_dir, kept)
    linker.start()

    start_ray(address="local", num_cpus=8, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
              log_to_driver=False, object_spilling_directory=str(spill_dir),
              _system_config={"object_spilling_threshold": 0.0, "min_spilling_size": 1})
    marker = np.random.default_rng(1).integers(0, 256, 512 * 1024, dtype=np.uint8)
    marker_ref = ray.put(marker)  # noqa: F841 - held so it stays a primary copy, which Ray then spills

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    packs = Path(ns.data_dir).parent / "packs"
    args = {"models": ns.models, "data_dir": ns.data_dir,
            "packs": {"renamed": str(renamed_pack(packs / "renamed", Path(ns.models), "mfn_spill"))}}
    # The tenant's shard actor takes each call late, as a busy one does: a message waiting for it sits unread in
    # the object store, where the spiller (every second or so) finds it. Ray's own testing delay of a gRPC handler.
    delay = f"CoreWorkerService.grpc_server.PushTask={BUSY_US}:{BUSY_US}"
    args["tenancy"] = {"shard_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": {
        "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "RAY_testing_asio_delay_us": delay}}}}
    serve.run(bind_app(args), name="spill", route_prefix="/")
    base = f"http://127.0.0.1:{port}"
    token = (Path(ns.data_dir) / "admin_token").read_text().strip()
    admin = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=120) as http:
        created = http.post("/v1/tenants", json={"name": "spill", "settings": {"keep_enrolment_photos": True}},
                            headers=admin).json()
        tenant_id, tenant = created["tenant_id"], {"Authorization": f"Bearer {created['api_key']}"}
        person = http.post("/v1/persons", json={"external_id": "spill"}, headers=tenant).json()["person_id"]
        # Faces enough that the batch's vectors are over Ray's inline limit too (FACES x 512 B > 100 KiB): each
        # photo is detected and embedded once, then enrolled several times with its crop kept.
        detector = serve.get_deployment_handle("Detector", "spill")
        tenants = serve.get_deployment_handle("TenantSupervisor", "spill")
        model = tenants.tenant.remote(tenant_id).result().model
        faces = [detector.detect.remote(Path(photo).read_bytes(), None, embed_with=model, crops=True).result()[0]
                 for photo in ns.photos]
        caller = op.InternalCaller(tenant_id, "key:spill")
        enrolled = [tenants.enrol_face.remote(op.EnrolFace(caller, person, faces[k % len(faces)], model))
                    for k in range(FACES)]  # at once: each waits BUSY_US
        assert all(response.result().face_id for response in enrolled)
        started = http.post(f"/v1/admin/tenants/{tenant_id}/migrate", json={"to": "renamed", "batch_size": 256},
                            headers=admin)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 120
        while (status := http.get(f"/v1/admin/tenants/{tenant_id}/migrate", headers=admin).json())["state"] != "done":
            assert status["state"] in ("running", "ready") and time.monotonic() < deadline, status
            time.sleep(0.2)
        bound = http.get(f"/v1/tenants/{tenant_id}", headers=admin).json()["model"]

    time.sleep(1.0)  # the last spills land and get linked
    linker.stop.set()
    linker.join()
    linker.sweep()

    # The tenant's crops and new vectors, as stored (decrypted here with the service's own keys).
    keys = serve.get_deployment_handle("KeyService", "spill")
    ciphers: dict[int, object] = {}

    def cipher(version: int):
        if version not in ciphers:
            ciphers[version] = keys.data_key.remote(tenant_id, "embeddings", version).result().cipher()
        return ciphers[version]

    target = serve.get_deployment_handle("Embedder-renamed", "spill").info.remote().result()  # the pack migrated to
    assert (bound["name"], bound["dim"]) == (target["name"], target["dim"]), (bound, target)
    model = target["model_id"]
    with TenantStore.open(tenant_db_path(ns.data_dir, tenant_id), tenant_id, model, target["dim"]) as store:
        loaded = store.load_all(cipher)
        crops = store.load_crops(loaded.face_ids, cipher)
    crop_rows = {f"crop:{face_id}": np.ascontiguousarray(crop[40:43]).tobytes() for face_id, crop in crops.items()}
    vectors = {f"vector:{face_id}": np.ascontiguousarray(vector, "<f4").tobytes()
               for face_id, vector in zip(loaded.face_ids, loaded.vectors)}
    blobs = [path.read_bytes() for path in sorted(kept.iterdir())]
    emit(spill_files=len(blobs), spilled_bytes=sum(len(b) for b in blobs), model=model,
         marker_found=bool(found_in(blobs, {"marker": marker[1000:3000].tobytes()})),
         crops=len(crop_rows), vectors=len(vectors),
         crops_found=found_in(blobs, crop_rows), vectors_found=found_in(blobs, vectors))
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
