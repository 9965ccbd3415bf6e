"""The audit through a TenantService on the real Ray cluster and KeyService (issue 17 §2, §4): a real tenant's
chain tampered with on disk after its actor is evicted (edit, deletion, reorder, truncation: each found),
the org audit's signed erasure receipt that outlives the tenant, and a content-key rotation that resumes
after the service that started it is gone."""

from __future__ import annotations

import asyncio
import shutil

import apsw
import numpy as np
import pytest

from tenancy import operations as op
from tests.galleries import add_vector, service_gallery
from tests.test_audit_api import cut

DIM = 128
MODEL = "mobilefacenet_arcface_w128/128"


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def new_service(data_dir):
    from ray import serve

    from tenancy.service import TenantService

    keys = serve.get_deployment_handle("KeyService", app_name="securegate")
    return TenantService(str(data_dir), keys, admin_token="test-admin", shard_actor_options={"num_cpus": 0.1})


async def enrolled_tenant(service, faces: int = 3):
    tenant, _ = await service.create_tenant("audited", MODEL, DIM)
    gallery = service_gallery(service)
    pid = (await gallery.create_person(op.CreatePerson(op.InternalCaller(tenant.tenant_id, "key:t1"), "someone", {"k": "v"}))).person_id
    rng = np.random.default_rng(5)
    for v in unit(rng.standard_normal((faces, DIM))):
        await add_vector(gallery, tenant, pid, v, "key:t1")
    return tenant, pid


def _tamper(path, kind: str) -> None:
    conn = apsw.Connection(str(path))
    with conn:
        if kind == "edit":
            body = bytes(conn.execute("SELECT body FROM audit_chain WHERE seq = 3").fetchone()[0])
            conn.execute("UPDATE audit_chain SET body = ? WHERE seq = 3", (body.replace(b'"key:t1"', b'"key:xx"'),))
        elif kind == "delete":
            conn.execute("DELETE FROM audit_chain WHERE seq = 3")
        elif kind == "reorder":
            rows = conn.execute("SELECT seq, body, prev_hash, entry_hash FROM audit_chain WHERE seq IN (3, 4) ORDER BY seq DESC").fetchall()
            conn.execute("DELETE FROM audit_chain WHERE seq IN (3, 4)")
            conn.executemany("INSERT INTO audit_chain (seq, body, prev_hash, entry_hash) VALUES (?, ?, ?, ?)", rows)
        else:  # truncate: the newest entry cut (the shutdown checkpoint covers it)
            conn.execute("DELETE FROM audit_chain WHERE seq = (SELECT max(seq) FROM audit_chain)")
    conn.close()


def test_tampering_with_a_real_tenant_file_is_found(app, tmp_path):
    from tenancy.actors import tenant_db_path

    service = new_service(tmp_path / "data")

    async def scenario():
        tenant, _ = await enrolled_tenant(service)
        await service_gallery(service).search(op.Search(op.InternalCaller(tenant.tenant_id, "key:t1"), unit(np.ones((1, DIM))),
                                                        MODEL, 1, 0.0))
        events = service.audit_events(tenant.tenant_id)
        assert [e["action"] for e in events] == ["tenant.create", "person.create", "face.enrol", "face.enrol",
                                                  "face.enrol", "search"]
        await service.evict(tenant.tenant_id)  # close: the head is checkpointed, the file is at rest
        intact = await service.verify_tenant_audit(tenant.tenant_id)
        assert intact["intact"] and intact["entries"] == 6 and intact["unsealed_tail"] == 0, intact
        path = tenant_db_path(service.data_dir, tenant.tenant_id)
        pristine = path.with_suffix(".pristine")
        shutil.copyfile(path, pristine)
        found = {}
        for kind in ("edit", "delete", "reorder", "truncate"):
            shutil.copyfile(pristine, path)
            _tamper(path, kind)
            found[kind] = await service.verify_tenant_audit(tenant.tenant_id)
        shutil.copyfile(pristine, path)
        return found

    found = asyncio.run(scenario())
    assert {kind: (r["intact"], r["reason"], r["first_bad_seq"]) for kind, r in found.items()} == {
        "edit": (False, "edited", 3), "delete": (False, "deleted", 3), "reorder": (False, "reordered", 3),
        "truncate": (False, "truncated", 6)}


def test_cutting_a_tenant_chain_with_its_checkpoints_is_found(app, tmp_path):
    """Issue 23 §5: the newest entries and the checkpoints that name them, deleted from the tenant's file. The file
    alone still verifies; the copy of its newest checkpoint kept in the org audit says entries were cut."""
    from tenancy.actors import tenant_db_path

    service = new_service(tmp_path / "data")

    async def scenario():
        tenant, _ = await enrolled_tenant(service)
        await service_gallery(service).search(op.Search(op.InternalCaller(tenant.tenant_id, "key:t1"), unit(np.ones((1, DIM))),
                                                        MODEL, 1, 0.0))
        await service.evict(tenant.tenant_id)  # the actor checkpoints its head as it closes; the service mirrors it
        before = await service.verify_tenant_audit(tenant.tenant_id)
        cut(tenant_db_path(service.data_dir, tenant.tenant_id), 4)
        return tenant, before, await service.verify_tenant_audit(tenant.tenant_id)

    tenant, before, after = asyncio.run(scenario())
    assert before["intact"] and before["entries"] == 6 and (before["anchored_seq"], before["anchored_in"]) == (6, "org_audit")
    assert (after["intact"], after["reason"], after["first_bad_seq"], after["entries"]) == (False, "truncated", 5, 4), after
    mirrors = [e for e in service.org_audit_events(0, 1000) if e["action"] == "audit.mirror"]
    assert mirrors and mirrors[-1]["details"]["tenant_id"] == tenant.tenant_id and mirrors[-1]["details"]["seq"] == 6


def test_cutting_the_org_audit_with_its_checkpoints_is_found(app, tmp_path):
    """Issue 23 §5: the org audit's newest entries and their checkpoints, deleted from org_audit.db. Its head is
    anchored in the KeyService's key store (MACed by the provider), which says entries were cut."""
    service = new_service(tmp_path / "data")

    async def scenario():
        for k in range(5):
            await service.org_record("admin:ops", "tenant.update", details={"tenant_id": f"t{k}"})
        before = await service.verify_org_audit()
        cut(service.org_audit.path, 3)
        return before, await service.verify_org_audit()

    before, after = asyncio.run(scenario())
    assert before["intact"] and before["unsealed_tail"] == 0 and before["anchored_in"] == "key_store"
    assert before["anchored_seq"] == before["entries"] == before["last_checkpoint_seq"] == 5, before
    assert (after["intact"], after["reason"], after["first_bad_seq"], after["entries"]) == (False, "truncated", 4, 3), after


def test_erasure_receipt_is_signed_and_outlives_the_tenant(app, tmp_path):
    from tenancy.actors import tenant_db_path

    service = new_service(tmp_path / "data")

    async def scenario():
        tenant, _ = await enrolled_tenant(service, faces=2)
        receipt = await service.delete_tenant(tenant.tenant_id, principal="admin:ops")
        return tenant, receipt, await service.verify_org_audit()

    tenant, receipt, verified = asyncio.run(scenario())
    assert not tenant_db_path(service.data_dir, tenant.tenant_id).parent.exists()
    events = service.org_audit_events()
    # (the tenant chain's last checkpoint, made as its actor closed, is mirrored before the files go)
    assert [(e["action"], e["actor"]) for e in events] == [("tenant.create", "admin"), ("audit.mirror", "audit"),
                                                            ("tenant.erase", "admin:ops")]
    details = events[-1]["details"]
    assert details["tenant_id"] == tenant.tenant_id and details["persons"] == 1 and details["faces"] == 2
    assert details["audit_entries"] == 4 and details["events"] == 0  # tenant.create, person.create, 2 enrolments
    assert details["key_ids"] == [f"tek:{tenant.tenant_id}", f"cek:{tenant.tenant_id}:embeddings:v1"]
    assert receipt["receipt_seq"] == events[-1]["seq"]
    # Signed at once: a checkpoint covers the receipt.
    assert verified["intact"] and verified["last_checkpoint_seq"] == events[-1]["seq"], verified
    # ...so editing it shows.
    conn = apsw.Connection(str(service.org_audit.path))
    body = bytes(conn.execute("SELECT body FROM audit_chain WHERE seq = ?", (events[-1]["seq"],)).fetchone()[0])
    with conn:
        conn.execute("UPDATE audit_chain SET body = ? WHERE seq = ?", (body.replace(b'"faces":2', b'"faces":0'), events[-1]["seq"]))
    conn.close()
    tampered = asyncio.run(service.verify_org_audit())
    assert (tampered["intact"], tampered["reason"]) == (False, "edited"), tampered


def test_a_content_key_rotation_resumes_after_a_restart(app, tmp_path):
    """The rotation's task dies with its service after one batch; a new service on the same data dir resumes it."""
    data_dir = tmp_path / "data"
    first = new_service(data_dir)

    async def start():
        tenant, _ = await enrolled_tenant(first, faces=5)
        progress = await first.rotations.rotate_tenant(tenant.tenant_id, batch_size=1)
        task = first.rotations.task(tenant.tenant_id)
        while first.rotations.log.get(tenant.tenant_id)["remaining"] is None:
            await asyncio.sleep(0.01)
        task.cancel()  # the TenantSupervisor dies mid-rotation
        with pytest.raises(asyncio.CancelledError):
            await task
        await first.evict(tenant.tenant_id)
        return tenant, progress

    tenant, progress = asyncio.run(start())
    stopped = first.rotations.log.get(tenant.tenant_id)
    assert stopped["state"] == "running" and 0 < stopped["remaining"] < 5, stopped

    second = new_service(data_dir)

    async def resume():
        assert await second.rotations.resume(batch_size=1) == [tenant.tenant_id]
        await second.rotations.task(tenant.tenant_id)
        info = await service_gallery(second).info(tenant.tenant_id)
        await second.evict(tenant.tenant_id)
        return info

    info = asyncio.run(resume())
    assert second.rotations.all()[tenant.tenant_id]["state"] == "done"
    assert info["key_versions"] == {progress["version"]: 5}, info
    actions = [(e["action"], e["outcome"]) for e in second.audit_events(tenant.tenant_id, 0, 1000)]
    assert actions.count(("key.reencrypt", "ok")) == 5 and actions[-1] == ("key.rotate", "done")


def test_sigkill_mid_enrolment_burst_leaves_no_face_without_its_audit_entry(app, tmp_path):
    """Issue 17 §4: SIGKILL of the tenant's actor during a burst of enrolments. Before, the audit was written
    after the actor's commit and 2 runs in 9 left a committed face with no audit event; now every face in the
    file has its `face.enrol` entry and every entry its face (and every acknowledged face is there)."""
    import os
    import signal

    from tenancy.actors import tenant_db_path
    from tenancy.store import TenantStore

    service = new_service(tmp_path / "data")

    async def scenario():
        tenant, pid = await enrolled_tenant(service, faces=0)
        victim = await (await service.shard_set(tenant)).primary.pid.remote()
        vectors = unit(np.random.default_rng(8).standard_normal((80, DIM)))
        gallery = service_gallery(service)
        burst = [asyncio.ensure_future(add_vector(gallery, tenant, pid, v, "key:t1")) for v in vectors]
        while sum(task.done() for task in burst) < 10:
            await asyncio.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        results = await asyncio.gather(*burst, return_exceptions=True)
        await service.evict(tenant.tenant_id)
        return tenant, [r for r in results if isinstance(r, str)], len(results)

    tenant, acknowledged, sent = asyncio.run(scenario())
    assert 10 <= len(acknowledged) < sent  # the kill really fell inside the burst
    with TenantStore.open(tenant_db_path(service.data_dir, tenant.tenant_id), tenant.tenant_id, MODEL, DIM) as store:
        faces = store.face_ids()
        enrolments = [e for e in store.audit_events(0, 1000) if e["action"] == "face.enrol" and e["outcome"] == "ok"]
    assert set(acknowledged) <= faces
    assert len(enrolments) == len(faces), (len(enrolments), len(faces))
    verified = asyncio.run(service.verify_tenant_audit(tenant.tenant_id))
    assert verified["intact"], verified
