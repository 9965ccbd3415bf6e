"""A full data disk through the running service (issue 23 §8): writes are refused with 507 `insufficient_storage`
(Retry-After, our own words, never a 500), `/v1/readyz` and the `securegate_data_disk_full` metric say so,
and afterwards nothing acknowledged is lost, every file passes SQLite's integrity check, the audit chains
verify, and writes resume once space is freed, without a restart.

Two disks: tests/diskfull.py's VFS (SQLITE_FULL at chosen writes, in the service's own processes: it always
runs), and a real tmpfs mounted for the test and filled with a file (skipped, with the reason, where the
test may not mount one). Each runs a small second app over its own data dir (tests/side_apps.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import apsw
import httpx
import pytest

from tests.conftest import REPO
from tests.diskfull import CONTROL_ENV
from tests.side_apps import run_side_app


class Service:
    def __init__(self, base: str, data_dir: Path) -> None:
        self.base, self.data_dir = base, data_dir
        self.http = httpx.Client(base_url=base, timeout=120)
        assert self.http.get("/v1/readyz").status_code == 200  # the TenantSupervisor has written its admin token
        self.admin = {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}

    def tenant(self, name: str) -> dict:
        r = self.http.post("/v1/tenants", json={"name": name}, headers=self.admin)
        assert r.status_code == 201, r.text
        return {"id": r.json()["tenant_id"], "auth": {"Authorization": f"Bearer {r.json()['api_key']}"}}

    def enrol(self, tenant: dict, person: str, photo: Path) -> httpx.Response:
        return self.http.post(f"/v1/persons/{person}/faces", json={"image": base64.b64encode(photo.read_bytes()).decode()},
                              headers=tenant["auth"])


def refused(answer: httpx.Response) -> None:
    assert answer.status_code == 507, answer.text
    error = answer.json()["error"]
    assert error["code"] == "insufficient_storage" and "disk is full" in error["message"], error
    assert int(answer.headers["Retry-After"]) >= 1 and "ray::" not in answer.text and "apsw" not in answer.text


def not_ready_for_the_disk(service: Service) -> None:
    ready = service.http.get("/v1/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["error"]["cause"] == "insufficient_storage" and "disk is full" in ready.json()["error"]["message"]


def after_the_disk_is_freed(service: Service, tenant: dict, person: str, acknowledged: list[str], photo: Path) -> None:
    """Writes resume without a restart; then what was acknowledged is all there, the files are whole, the audits verify."""
    from ray import serve

    deadline = time.monotonic() + 30
    while (answer := service.enrol(tenant, person, photo)).status_code != 201:
        refused(answer)  # until the TenantSupervisor's probe and SQLite see the space again; never anything else
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)
    acknowledged.append(answer.json()["face_id"])
    assert service.http.get("/v1/readyz").status_code == 200
    faces = service.http.get(f"/v1/persons/{person}", headers=tenant["auth"]).json()["faces"]
    assert sorted(f["face_id"] for f in faces) == sorted(acknowledged)
    for scope in ({"tenant": tenant["id"]}, {}):
        verified = service.http.get("/v1/admin/audit/verify", params=scope, headers=service.admin).json()
        assert verified["intact"], (scope, verified)
    app = service.base.rsplit("/", 1)[1]
    assert serve.get_deployment_handle("TenantSupervisor", app).evict.remote(tenant["id"]).result()
    for db in service.data_dir.rglob("*.db"):
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db
        conn.close()


def metric(metrics_port: int, data_dir: Path, value: int, timeout_s: float = 90) -> None:
    """`securegate_data_disk_full` for this data dir reaches `value` in Ray's Prometheus export."""
    label = f'data_dir="{data_dir}"'
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        lines = [line for line in text.splitlines() if line.startswith("ray_securegate_data_disk_full") and label in line]
        if lines and float(lines[-1].rsplit(" ", 1)[1]) == value:
            return
        time.sleep(2)
    raise AssertionError(f"securegate_data_disk_full{{{label}}} never reached {value}")


# ------------------------------------------------------------------------------------------------ the VFS
def startup_dir(directory: Path) -> Path:
    """A directory holding a `sitecustomize.py` (which Python runs at start in any process with the directory on
    PYTHONPATH) that installs the full-disk VFS: how the side app's TenantSupervisor and shard actors get it (Ray's
    `worker_process_setup_hook` is taken from the job's runtime env only, not an actor's)."""
    (directory / "sitecustomize.py").write_text(
        '"""Written by tests/test_disk_full.py: tests/diskfull.py\'s VFS becomes this process\'s default."""\n'
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\nimport tests.diskfull\ntests.diskfull.install()\n")
    return directory


@pytest.fixture(scope="module")
def vfs_service(app, serve_port, models_dir, tmp_path_factory):
    from ray import serve

    data = tmp_path_factory.mktemp("disk-full-data")
    control = tmp_path_factory.mktemp("disk-full-control") / "full.json"
    env = {CONTROL_ENV: str(control), "PYTHONPATH": str(startup_dir(tmp_path_factory.mktemp("disk-full-startup")))}
    run_side_app("disk-full", "/disk-full", models_dir, data,
                 supervisor_options={"ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": env}}},
                 settings={"tenancy": {"shard_actor_options": {"num_cpus": 0.05, "runtime_env": {"env_vars": {
                     **env, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}}}}})
    try:
        yield Service(f"http://127.0.0.1:{serve_port}/disk-full", data), control
    finally:
        control.unlink(missing_ok=True)
        serve.delete("disk-full")


def test_a_full_disk_answers_507_and_loses_nothing(vfs_service, identity_photos, metrics_port):
    service, control = vfs_service
    tenant = service.tenant("fills-up")
    person = service.http.post("/v1/persons", json={"external_id": "p"}, headers=tenant["auth"]).json()["person_id"]
    photos = identity_photos["obama"]
    acknowledged = [service.enrol(tenant, person, photos[0]).json()["face_id"]]

    control.write_text(json.dumps({"root": str(service.data_dir), "after": 0}))  # the disk is full
    refused(service.enrol(tenant, person, photos[1]))
    refused(service.http.post("/v1/persons", json={"external_id": "q"}, headers=tenant["auth"]))
    refused(service.http.post("/v1/tenants", json={"name": "no-room"}, headers=service.admin))
    not_ready_for_the_disk(service)
    metric(metrics_port, service.data_dir, 1)

    for after in (1, 2, 3, 5, 8):  # it fills in the middle of a transaction: the write rolls back whole
        control.write_text(json.dumps({"root": str(service.data_dir), "after": after}))
        answer = service.enrol(tenant, person, photos[1])
        if answer.status_code == 201:
            acknowledged.append(answer.json()["face_id"])
        else:
            refused(answer)

    control.unlink()  # space freed
    after_the_disk_is_freed(service, tenant, person, acknowledged, photos[-1])
    metric(metrics_port, service.data_dir, 0)


# ---------------------------------------------------------------------------------------------- a tmpfs
@pytest.fixture(scope="module")
def tmpfs_service(app, serve_port, models_dir, tmp_path_factory):
    from ray import serve

    mount = tmp_path_factory.mktemp("disk-full-tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the tmpfs variant needs to mount a tmpfs, which this host refuses ({done.stderr.strip()}); "
                    "the VFS variant above covers the service's answers")
    data = mount / "data"
    try:
        run_side_app("disk-tmpfs", "/disk-tmpfs", models_dir, data)
        yield Service(f"http://127.0.0.1:{serve_port}/disk-tmpfs", data), mount
    finally:
        serve.delete("disk-tmpfs")
        deadline = time.monotonic() + 30  # the TenantSupervisor's process lets go of its files as it exits
        while subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                subprocess.run(["umount", "--lazy", str(mount)], capture_output=True)  # never left mounted
                break
            time.sleep(1)


def test_a_real_full_tmpfs_answers_507_and_recovers(tmpfs_service, identity_photos):
    service, mount = tmpfs_service
    tenant = service.tenant("tmpfs")
    person = service.http.post("/v1/persons", json={}, headers=tenant["auth"]).json()["person_id"]
    photos = identity_photos["biden"]
    acknowledged = [service.enrol(tenant, person, photos[0]).json()["face_id"]]

    filler = mount / "filler"
    # Unbuffered: a buffered file would raise ENOSPC again as it closes, flushing what the full disk refused.
    with open(filler, "wb", buffering=0) as fh:  # every byte left, taken
        try:
            while True:
                fh.write(os.urandom(1 << 16))
        except OSError:
            pass
    answers = []
    for _ in range(20):  # enrolments until the files' own slack is used up: then refused, never a 500
        answer = service.enrol(tenant, person, photos[1])
        answers.append(answer.status_code)
        if answer.status_code == 201:
            acknowledged.append(answer.json()["face_id"])
        else:
            refused(answer)
            break
    assert 507 in answers, answers
    not_ready_for_the_disk(service)

    filler.unlink()  # space freed
    after_the_disk_is_freed(service, tenant, person, acknowledged, photos[-1])
