"""Model upgrades (issue part 3): kept enrolment crops and `securegate migrate`, through a running application
that serves three packs: the shared development pack (`default`), the batch-1 copy of the same recognizer
under another name (`renamed`: same weights, another model id) and a genuinely different recognizer built
from the shared one (`rotated`: its output projected onto a random 96-d subspace, tests/model_packs.py), on
the shared photos. Searches are checked before, during and after each migration; a migration is interrupted
by killing the tenant's shard actor and by restarting the whole application, and resumes."""

from __future__ import annotations

import sqlite3
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from cli.main import main as securegate
from securegate.client import NoKeptCropsError, SecureGateClient, ServiceUnavailableError
from tests.model_packs import renamed_pack, rotated_pack

APP, PREFIX = "securegate-migration", "/migration"
THRESHOLD = 0.37  # the development recognizer's (README "Models"); the rotated one separates the photos as well


@pytest.fixture(scope="module")
def deployment(serve_port, models_dir, tmp_path_factory):
    from ray import serve

    from graph import build_app

    root = tmp_path_factory.mktemp("packs")
    args = {"models": str(models_dir), "data_dir": str(tmp_path_factory.mktemp("migration-data")),
            "packs": {"renamed": str(renamed_pack(root / "renamed", models_dir, "mfn_renamed")),
                      "rotated": str(rotated_pack(root / "rotated", models_dir, "mfn_rotated96"))}}

    def start():
        serve.run(build_app(args), name=APP, route_prefix=PREFIX)

    def restart():
        serve.delete(APP)
        start()

    start()
    base = f"http://127.0.0.1:{serve_port}{PREFIX}"
    with SecureGateClient(base) as probe:
        probe.readyz()  # the TenantSupervisor has started and written the admin token
    token = open(f"{args['data_dir']}/admin_token").read().strip()
    yield SimpleNamespace(base=base, token=token, data_dir=args["data_dir"], restart=restart)
    serve.delete(APP)


@pytest.fixture(scope="module")
def admin(deployment):
    with SecureGateClient(deployment.base, admin_token=deployment.token, timeout=120) as client:
        yield client


def split_photos(identity_photos) -> tuple[list[tuple[str, object]], dict[str, object]]:
    """Every identity's photos but its last enrolled, the last kept as a probe (identities with two or more)."""
    enrol, probes = [], {}
    for who, photos in sorted(identity_photos.items()):
        enrol += [(who, p) for p in photos[:-1]]
        probes[who] = photos[-1]
    return enrol, probes


def new_tenant(admin, deployment, name: str, keep: bool, photos) -> tuple[str, SecureGateClient]:
    created = admin.create_tenant(name, {"keep_enrolment_photos": keep})
    client = SecureGateClient(deployment.base, api_key=created.api_key, timeout=120)
    enrolled = 0
    for k in range(0, len(photos), 6):  # a few per call: the Detector queues at most 8 images per caller
        answer = client.import_faces([{"external_id": who, "image": photo} for who, photo in photos[k:k + 6]])
        enrolled += answer.enrolled
    assert enrolled >= len({who for who, _ in photos})
    return created.tenant_id, client


def retried(call, *args, **kwargs):
    """A call retried on 503 `unavailable`, as a client does while a killed shard actor restarts."""
    for attempt in range(50):
        try:
            return call(*args, **kwargs)
        except ServiceUnavailableError:
            if attempt == 49:
                raise
            time.sleep(0.2)


def identities(client, probes) -> dict[str, str | None]:
    """Who each probe photo is found to be (top match at the development threshold), or None."""
    found = {}
    for who, photo in probes.items():
        faces = retried(client.search, photo, threshold=THRESHOLD, top_k=1).faces
        found[who] = faces[0].matches[0].external_id if faces[0].matches else None
    return found


def wait_for(admin, tenant_id: str, states: set[str], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while (status := admin.migration_status(tenant_id)).state not in states:
        assert status.state in ("running", "ready") and time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def kept_rows(deployment, tenant_id: str) -> tuple[int, int, int]:
    """(faces, kept crops, shadow vectors) in the tenant's file, counted with the sqlite3 module."""
    with sqlite3.connect(f"{deployment.data_dir}/tenants/{tenant_id}/embeddings.db") as db:
        return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("faces", "face_crops", "face_shadow"))


def test_a_tenant_without_kept_crops_is_refused_and_told_why(admin, deployment, identity_photos):
    enrol, _ = split_photos(identity_photos)
    tenant_id, client = new_tenant(admin, deployment, "no-crops", False, enrol[:3])
    with client, pytest.raises(NoKeptCropsError) as refused:
        admin.migrate_tenant(tenant_id, "renamed")
    assert refused.value.status == 409 and refused.value.code == "no_kept_crops"
    assert "keep_enrolment_photos" in refused.value.message and "re-embedded" in refused.value.message
    assert kept_rows(deployment, tenant_id)[1] == 0
    # Turning the setting on later does not help the faces enrolled before: the refusal counts them.
    admin.update_tenant(tenant_id, {"keep_enrolment_photos": True})
    with pytest.raises(NoKeptCropsError) as refused:
        admin.migrate_tenant(tenant_id, "renamed")
    assert "3 of tenant" in refused.value.message or "enrolled without a kept crop" in refused.value.message
    assert admin.get_tenant(tenant_id).model.name == "mobilefacenet_arcface_w128"
    # An unknown pack is a bad request naming the packs served.
    r = httpx.post(f"{deployment.base}/v1/admin/tenants/{tenant_id}/migrate", json={"to": "nope"},
                   headers={"Authorization": f"Bearer {deployment.token}"})
    assert r.status_code == 400 and "renamed" in r.json()["error"]["message"]


def test_renamed_model_held_before_the_switch_then_switched(admin, deployment, identity_photos):
    """Same weights under another model id: answers are identical before, during and after; the binding changes
    only at the switch; a face enrolled while the shadow waits is caught up before the switch."""
    enrol, probes = split_photos(identity_photos)
    tenant_id, client = new_tenant(admin, deployment, "renamed", True, enrol)
    with client:
        before = identities(client, probes)
        assert before == {who: who for who in probes}
        faces, crops, _ = kept_rows(deployment, tenant_id)
        assert crops == faces > 0  # bulk import kept every face's crop

        started = admin.migrate_tenant(tenant_id, "renamed", batch_size=4, hold=True)
        assert (started.from_model, started.to_model) == ("mobilefacenet_arcface_w128/128", "mfn_renamed/128")
        held = wait_for(admin, tenant_id, {"ready"})
        assert held.done == held.total == faces and held.crops_per_s > 0
        assert kept_rows(deployment, tenant_id)[2] == faces  # the shadow index is complete, and waits
        # During: still the old model, and searches answer from it.
        assert admin.get_tenant(tenant_id).model.name == "mobilefacenet_arcface_w128"
        assert identities(client, probes) == before
        late = client.create_person(external_id="late-arrival")
        who = sorted(probes)[0]
        late_face = client.enrol_face(late.person_id, identity_photos[who][0]).face_id
        assert kept_rows(deployment, tenant_id)[2] == faces  # no shadow vector yet for the late face

        released = admin.migrate_tenant(tenant_id, "renamed", hold=False)  # the CLI's `migrate` without --hold
        assert released.state == "running"
        done = wait_for(admin, tenant_id, {"done"})
        assert done.done == faces + 1 and done.error is None
        assert admin.get_tenant(tenant_id).model.name == "mfn_renamed"
        assert kept_rows(deployment, tenant_id) == (faces + 1, faces + 1, 0)
        after = client.search(probes[who], threshold=THRESHOLD, top_k=2).faces[0].matches
        assert {m.external_id for m in after} == {who, "late-arrival"}
        assert next(m.face_id for m in after if m.external_id == "late-arrival") == late_face
        others = {w: p for w, p in probes.items() if w != who}  # `who`'s probe ties with the late copy
        assert identities(client, others) == {w: w for w in others}
        # The org audit holds the start (with the admin key's name) and the switch, with no personal data.
        org = httpx.get(f"{deployment.base}/v1/admin/audit", params={"limit": 1000},
                        headers={"Authorization": f"Bearer {deployment.token}"}).json()["events"]
        mine = [e for e in org if e.get("details", {}).get("tenant_id") == tenant_id]
        assert [(e["action"], e["outcome"]) for e in mine if e["action"].startswith("model.")] == [
            ("model.migrate", "started"), ("model.migrate", "switch-requested"), ("model.switch", "ok")], mine


def test_rotated_model_interrupted_by_actor_and_app_restarts(admin, deployment, identity_photos, capsys):
    """A different recognizer (96-d): old vectors could not even be compared with its probes, so searches after
    the switch finding the right people proves every face, the late one too, was re-embedded."""
    import ray

    enrol, probes = split_photos(identity_photos)
    tenant_id, client = new_tenant(admin, deployment, "rotated", True, enrol)
    faces = kept_rows(deployment, tenant_id)[0]
    with client:
        before = identities(client, probes)
        assert before == {who: who for who in probes}
        # Started by the CLI, slowly (2 crops a batch, a pause between batches) so it is caught mid-way.
        code = securegate(["migrate", "--tenant", tenant_id, "--to", "rotated", "--batch-size", "2", "--pause", "1.0",
                           "--url", deployment.base, "--admin-token", deployment.token])
        assert code == 0
        assert '"to_model": "mfn_rotated96/96"' in capsys.readouterr().out
        # The tenant's shard actor dies mid-migration: Ray restarts it, the driver carries on.
        ray.kill(ray.get_actor(f"tenant-shard:{tenant_id}", namespace="securegate"), no_restart=False)
        assert identities(client, probes) == before  # during: the old model answers
        late = client.create_person(external_id="late-arrival")
        who = sorted(probes)[-1]
        late_face = retried(client.enrol_face, late.person_id, identity_photos[who][0]).face_id
        status = admin.migration_status(tenant_id)
        assert status.state == "running" and 0 < status.done < status.total, status
        assert admin.get_tenant(tenant_id).model.dim == 128

    # The whole application restarts mid-migration; the new TenantSupervisor resumes from the shadow in the file.
    interrupted_at = kept_rows(deployment, tenant_id)[2]
    deployment.restart()
    code = securegate(["migrate", "--tenant", tenant_id, "--status", "--url", deployment.base,
                       "--admin-token", deployment.token])
    assert code == 0 and '"state": "running"' in capsys.readouterr().out
    done = wait_for(admin, tenant_id, {"done"}, timeout=90)
    assert done.total == faces + 1 and 0 < interrupted_at < faces + 1
    assert (admin.get_tenant(tenant_id).model.name, admin.get_tenant(tenant_id).model.dim) == ("mfn_rotated96", 96)

    with SecureGateClient(deployment.base, api_key=client.api_key, timeout=120) as after:
        others = {w: p for w, p in probes.items() if w != who}  # `who`'s probe ties with the late copy
        assert identities(after, others) == {w: w for w in others}
        matches = after.search(probes[who], threshold=THRESHOLD, top_k=2).faces[0].matches
        assert next(m.face_id for m in matches if m.external_id == "late-arrival") == late_face
        embedded = np.asarray(after.embed(probes[who]).faces[0].embedding)
        assert embedded.shape == (128,)  # /v1/embed stays on the default pack; the tenant's vectors are 96-d
        # Kept crops go with their person, in the same transaction.
        assert kept_rows(deployment, tenant_id)[:2] == (faces + 1, faces + 1)
        after.delete_person(late.person_id)
        assert kept_rows(deployment, tenant_id)[:2] == (faces, faces)
        audit = [e.action for e in after.iter_audit()]
        assert "model.migrate" in audit and "model.switch" in audit
        # Cameras embed with the default pack: this tenant's camera is refused, and says why.
        auth = {"Authorization": f"Bearer {after.api_key}"}
        stream = httpx.post(f"{deployment.base}/v1/streams", json={"name": "lobby"}, headers=auth, timeout=60).json()
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{deployment.base}/v1/streams/{stream['stream_id']}", headers=auth,
                                   timeout=60).json()["status"])["state"] != "failed":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert "bound to mfn_rotated96/96" in status["last_error"], status
        httpx.delete(f"{deployment.base}/v1/streams/{stream['stream_id']}", headers=auth, timeout=60)


@pytest.mark.parametrize("pack", ["renamed", "rotated"])
def test_a_camera_unknown_never_enters_another_models_gallery(admin, deployment, identity_photos, pack):
    """Issue 23: an unknown's vectors were sealed without their model, so after a switch to another model of the
    same dimension (`renamed`) a promotion put the old model's vectors into the new model's gallery, and after a
    switch to another dimension (`rotated`) it made the person, then failed on their faces, leaving half a
    person. The vectors are bound to their model: promotion and rejection are refused with model_mismatch, and
    nothing is made."""
    created = admin.create_tenant(f"camera-unknown-{pack}", {"keep_enrolment_photos": True})
    auth = {"Authorization": f"Bearer {created.api_key}"}
    with SecureGateClient(deployment.base, api_key=created.api_key, timeout=120) as client, \
            httpx.Client(base_url=deployment.base, headers=auth, timeout=120) as http:
        assert client.import_faces([{"external_id": "obama", "image": identity_photos["obama"][0]}]).enrolled == 1
        r = http.post("/v1/streams", json={"name": "door", "fps": 5, "cooldown_s": 0})
        assert r.status_code == 201, r.text
        stream_id, stranger, origin = r.json()["stream_id"], identity_photos["alex_lacamoire"][0].read_bytes(), time.time()
        for i in range(8):  # the stranger in front of a pushing camera for 1.6 s
            r = http.post(f"/v1/streams/{stream_id}/frames", params={"ts": origin + i * 0.2}, content=stranger,
                          headers={"Content-Type": "image/jpeg"})
            assert r.status_code == 202, r.text
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while not (unknowns := http.get("/v1/unknowns").json()["unknowns"]):
            assert time.monotonic() < deadline, "no unknown from the camera"
            time.sleep(0.25)
        (unknown,) = unknowns

        admin.migrate_tenant(created.tenant_id, pack)
        assert wait_for(admin, created.tenant_id, {"done"}).error is None
        persons = client.list_persons().persons
        r = http.post(f"/v1/unknowns/{unknown['unknown_id']}/promote", json={"external_id": "visitor"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_mismatch", r.text
        r = http.post(f"/v1/persons/{persons[0].person_id}/rejections", json={"unknown_id": unknown["unknown_id"]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_mismatch", r.text
        assert [p.person_id for p in client.list_persons().persons] == [p.person_id for p in persons]  # no half person
        assert http.get("/v1/unknowns").json()["unknowns"] == unknowns
        assert client.list_rejections(persons[0].person_id).rejections == []


def test_kept_crops_and_shadow_in_the_store_follow_their_face(tmp_path):
    """TenantStore on a real file, without Ray: a kept crop reads back as given and goes with its face (retention's
    delete_faces, a person's deletion); a content-key rotation re-seals crops and shadow vectors; shadow progress
    survives reopening the file (what a resumed migration reads); the switch changes nothing while a face lacks
    its shadow vector, then binds the file to the new model in one step."""
    import os

    from kms import Keyring
    from kms.providers.local import LocalKeyProvider
    from kms.records import RecordCipher
    from tenancy.personal import PersonKeys
    from tenancy.store import ModelMismatch, TenantStore

    ring = Keyring(LocalKeyProvider(tmp_path / "keys" / "root.key"), tmp_path / "keys" / "keystore.db")
    ring.create_tenant("t1")
    keys = PersonKeys(lambda version, purpose: ring.data_key("t1", purpose, version))
    v1, v2 = RecordCipher(os.urandom(32), 1), RecordCipher(os.urandom(32), 2)
    ciphers = {1: v1, 2: v2}.__getitem__
    rng = np.random.default_rng(5)
    crops = rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    path = tmp_path / "t1.db"
    with TenantStore.open(path, "t1", "old/4", 4) as store:
        alice = store.create_person("alice", {}, keys=keys).person_id
        bob = store.create_person("bob", {}, keys=keys).person_id
        faces = [store.add_face(p, rng.standard_normal(4), v1, 0.9, 0.9, crop=c).face_id
                 for p, c in zip([alice, alice, bob, bob], crops)]
        loaded = store.load_crops(faces, ciphers)
        assert all((loaded[f] == c).all() for f, c in zip(faces, crops))
        assert store.crop_counts() == {"faces": 4, "with_crop": 4}
        store.delete_faces([faces[0]])  # what retention (expire_faces) does
        assert store.crop_counts() == {"faces": 3, "with_crop": 3} and store.load_crops([faces[0]], ciphers) == {}
        ids, missing, no_crop = store.shadow_missing("new/3", 2)
        assert (len(ids), missing, no_crop) == (2, 3, 0)
        assert store.add_shadow("new/3", 3, ids, rng.standard_normal((2, 3)), v1) == 2
    with TenantStore.open(path, "t1", "old/4", 4) as store:  # a restart: the committed batch is there
        ids, missing, _ = store.shadow_missing("new/3", 10)
        assert missing == 1 and len(ids) == 1 and ids[0] in faces[1:]
        assert store.reencrypt_kept(ciphers, v2, 500) == 0  # crops and shadow re-sealed under version 2
        assert store.switch_model("new/3", 3) is None  # a face still lacks its shadow vector: nothing changed
        assert store.model == "old/4"
        store.add_shadow("new/3", 3, ids, rng.standard_normal((1, 3)), v2)
        assert store.switch_model("new/3", 3) == 3
        assert store.load_all(ciphers).vectors.shape == (3, 3) and store.shadow_count("new/3") == 0
        store.delete_person(bob)
        assert store.crop_counts() == {"faces": 1, "with_crop": 1}
    with pytest.raises(ModelMismatch):
        TenantStore.open(path, "t1", "old/4", 4)
    with TenantStore.open(path, "t1", "new/3", 3) as store:
        assert (store.load_crops(faces[1:2], ciphers)[faces[1]] == crops[1]).all()
