"""Tenants, persons, enrolment and search through the running application, on the real photos."""

import base64
import os
import random
import signal
import time

import apsw
import numpy as np
import pytest

from tests import hostile
from tests.docs_snippets import doc_snippet


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def admin(app, data_dir, http):
    http.get("/v1/readyz")  # the TenantSupervisor has started and written the token
    token = (data_dir / "admin_token").read_text().strip()
    assert oct((data_dir / "admin_token").stat().st_mode & 0o777) == "0o600"
    return {"Authorization": f"Bearer {token}"}


def new_tenant(http, admin, name="acme", settings=None) -> dict:
    r = http.post("/v1/tenants", json={"name": name, "settings": settings}, headers=admin)
    assert r.status_code == 201, r.text
    body = r.json()
    return {"id": body["tenant_id"], "key": body["api_key"], "auth": {"Authorization": f"Bearer {body['api_key']}"}}


def enrol(http, tenant, person_id, photo, **extra):
    return http.post(f"/v1/persons/{person_id}/faces", json={"image": b64(photo.read_bytes()), **extra}, headers=tenant["auth"])


def create_person(http, tenant, external_id=None, metadata=None) -> str:
    r = http.post("/v1/persons", json={"external_id": external_id, "metadata": metadata or {}}, headers=tenant["auth"])
    assert r.status_code == 201, r.text
    return r.json()["person_id"]


def search(http, tenant, photo_bytes, **extra):
    r = http.post("/v1/search", json={"image": b64(photo_bytes), **extra}, headers=tenant["auth"])
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def gallery(http, admin, identity_photos):
    """One tenant with the first photo of each identity enrolled: {identity: person_id}."""
    tenant = new_tenant(http, admin, "gallery")
    persons = {}
    for who, photos in identity_photos.items():
        persons[who] = create_person(http, tenant, external_id=who, metadata={"source": "shared"})
        r = enrol(http, tenant, persons[who], photos[0])
        assert r.status_code == 201, r.text
    return tenant, persons


def test_admin_endpoints_need_the_admin_token(http, gallery):
    tenant, _ = gallery
    assert http.get("/v1/tenants").status_code == 401
    assert http.get("/v1/tenants", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] == "forbidden"
    assert http.get("/v1/tenants", headers=tenant["auth"]).status_code == 403


def test_tenant_endpoints_need_a_valid_key(http):
    for headers in ({}, {"Authorization": "Bearer sg_nope_nope"}, {"Authorization": "Basic abc"}):
        r = http.get("/v1/persons", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"


def test_every_other_photo_is_top1_and_strangers_match_nobody(http, gallery, identity_photos, faces_root):
    tenant, persons = gallery
    for who, photos in identity_photos.items():
        for photo in photos[1:]:
            result = search(http, tenant, photo.read_bytes())
            (face,) = result["faces"]
            assert face["matches"], (who, photo.name)
            top = face["matches"][0]
            assert top["person_id"] == persons[who] and top["external_id"] == who, (who, photo.name, top)
    # Strangers: Lin-Manuel Miranda is not enrolled (the unknown third face of obama_and_biden.jpg is
    # checked below). two_people.jpg is labelled "unknown" but its faces are enrolled people, so it is no
    # stranger test.
    result = search(http, tenant, (faces_root / "scenes" / "lin_manuel_miranda.png").read_bytes(), top_k=3)
    assert len(result["faces"]) == 1 and result["faces"][0]["matches"] == [], result


def test_search_covers_every_face_in_one_call(http, gallery, faces_root):
    tenant, persons = gallery
    result = search(http, tenant, (faces_root / "scenes" / "obama_and_biden.jpg").read_bytes(), top_k=2)
    assert len(result["faces"]) == 3
    matched = sorted(f["matches"][0]["external_id"] for f in result["faces"] if f["matches"])
    assert matched == ["biden", "obama"]
    result = search(http, tenant, (faces_root / "scenes" / "kit_with_rose.jpg").read_bytes())
    assert sorted(f["matches"][0]["external_id"] for f in result["faces"]) == ["kit_harington", "rose_leslie"]


def test_search_takes_the_image_raw_as_the_body(http, gallery, faces_root, identity_photos):
    """The raw form (the photo's bytes as the body, options in the query string) answers exactly what the JSON
    form answers, on real photos; both forms pass the same gate and refusals."""
    tenant, _ = gallery
    scene = (faces_root / "scenes" / "obama_and_biden.jpg").read_bytes()
    for media_type in ("image/jpeg", "application/octet-stream"):
        raw = http.post("/v1/search", content=scene, params={"top_k": 2},
                        headers={**tenant["auth"], "content-type": media_type})
        assert raw.status_code == 200, raw.text
        assert raw.json() == search(http, tenant, scene, top_k=2)
    one = http.post("/v1/search", content=identity_photos["biden"][1].read_bytes(), params={"threshold": 0.99},
                    headers={**tenant["auth"], "content-type": "image/jpeg"}).json()
    assert [f["matches"] for f in one["faces"]] == [[]]  # the query's threshold was applied
    refusals = [
        (dict(content=scene, params={"top_k": 0}, headers={"content-type": "image/jpeg"}), 400, "invalid_request"),
        (dict(content=scene, params={"colour": "red"}, headers={"content-type": "image/jpeg"}), 400, "invalid_request"),
        (dict(content=b"", headers={"content-type": "image/jpeg"}), 400, "invalid_image"),
        (dict(content=b"not an image", headers={"content-type": "application/octet-stream"}), 400, "invalid_image"),
        (dict(content=scene, headers={"content-type": "text/plain"}), 415, "unsupported_media_type"),
        (dict(content=b"image=abc", headers={"content-type": "application/x-www-form-urlencoded"}), 415,
         "unsupported_media_type"),
        (dict(json={"image": b64(scene)}, params={"top_k": 2}), 400, "invalid_request"),  # JSON: options in the body
        (dict(content=scene + b" " * (21 * 1024 * 1024), headers={"content-type": "image/jpeg"}), 413, "payload_too_large"),
    ]
    for request, status, code in refusals:
        r = http.post("/v1/search", **{**request, "headers": {**tenant["auth"], **request.get("headers", {})}})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (request.get("headers"), r.text)
    assert http.post("/v1/search", content=scene, headers={"content-type": "image/jpeg"}).status_code == 401


def test_enrolment_takes_the_image_raw_as_the_body(http, gallery, faces_root, identity_photos):
    """Enrolling a face in the raw form (`face_index` in the query string) enrols the face the JSON form would:
    the person is then found by search on another photo of them."""
    tenant, _ = gallery
    person = create_person(http, tenant, external_id="kit-raw")
    r = http.post(f"/v1/persons/{person}/faces", content=(faces_root / "scenes" / "kit_with_rose.jpg").read_bytes(),
                  params={"face_index": 5}, headers={**tenant["auth"], "content-type": "image/jpeg"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request"), r.text  # 2 faces: no index 5
    assert "face_index 5" in r.json()["error"]["message"]  # the query's option reached the enrolment
    r = http.post(f"/v1/persons/{person}/faces", content=identity_photos["kit_harington"][1].read_bytes(),
                  headers={**tenant["auth"], "content-type": "image/jpeg"})
    assert r.status_code == 201 and r.json()["face_id"], r.text
    found = search(http, tenant, identity_photos["kit_harington"][2].read_bytes(), top_k=3)
    assert person in [m["person_id"] for m in found["faces"][0]["matches"]]
    http.delete(f"/v1/persons/{person}", headers=tenant["auth"]).raise_for_status()


def test_verify_against_an_enrolled_person(http, gallery, identity_photos):
    tenant, persons = gallery
    same = http.post("/v1/verify", json={"image": b64(identity_photos["obama"][2].read_bytes()), "person_id": persons["obama"]},
                     headers=tenant["auth"]).json()
    other = http.post("/v1/verify", json={"image": b64(identity_photos["biden"][1].read_bytes()), "person_id": persons["obama"]},
                      headers=tenant["auth"]).json()
    assert same["match"] is True and other["match"] is False
    assert same["similarity"] == same["best_face_similarity"]


def test_person_views_and_pagination(http, gallery):
    tenant, persons = gallery
    view = http.get(f"/v1/persons/{persons['biden']}", headers=tenant["auth"]).json()
    assert view["external_id"] == "biden" and view["metadata"] == {"source": "shared"} and len(view["faces"]) == 1
    seen, cursor = [], None
    while True:
        page = http.get("/v1/persons", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=tenant["auth"]).json()
        seen += [p["person_id"] for p in page["persons"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(persons.values())


def test_enrolment_errors(http, admin, identity_photos, faces_root):
    tenant = new_tenant(http, admin, "strict")
    pid = create_person(http, tenant, "someone")
    r = enrol(http, tenant, pid, faces_root / "scenes" / "kit_with_rose.jpg")
    assert r.status_code == 422 and r.json()["error"]["code"] == "multiple_faces" and len(r.json()["error"]["faces"]) == 2
    assert enrol(http, tenant, pid, faces_root / "scenes" / "kit_with_rose.jpg", face_index=1).status_code == 201
    r = http.post(f"/v1/persons/{pid}/faces", json={"image": b64(hostile.faceless_photo())}, headers=tenant["auth"])
    assert r.json()["error"]["code"] == "no_face"
    r = http.post("/v1/persons", json={"external_id": "someone"}, headers=tenant["auth"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    r = enrol(http, tenant, "0" * 32, identity_photos["obama"][0])
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    # Quality gates from tenant settings: an impossible face size gives low_quality with its reason.
    r = http.patch(f"/v1/tenants/{tenant['id']}", json={"settings": {"quality": {"min_face_px": 5000}}}, headers=admin)
    assert r.status_code == 200 and r.json()["settings"]["quality"]["min_face_px"] == 5000
    r = enrol(http, tenant, pid, identity_photos["obama"][0])
    assert r.status_code == 422 and r.json()["error"]["code"] == "low_quality"
    assert [reason["gate"] for reason in r.json()["error"]["reasons"]] == ["face_size"]


def test_tenants_never_see_each_other(app, http, admin, identity_photos):
    """Randomised operations on two tenants over many rounds: neither ever sees the other's persons."""
    rng = random.Random(7)
    tenants = [new_tenant(http, admin, f"isolated-{i}") for i in range(2)]
    owned = {0: set(), 1: set()}
    photos = [p for ps in identity_photos.values() for p in ps]
    for _ in range(24):
        i = rng.randrange(2)
        me = tenants[i]
        op = rng.choice(["create", "enrol", "search", "peek", "delete"])
        if op == "create" or not owned[i]:
            owned[i].add(create_person(http, me, metadata={"round": _}))
        elif op == "enrol":
            enrol(http, me, rng.choice(sorted(owned[i])), rng.choice(photos))
        elif op == "search":
            for face in search(http, me, rng.choice(photos).read_bytes(), top_k=5, threshold=-1)["faces"]:
                assert {m["person_id"] for m in face["matches"]} <= owned[i]
        elif op == "peek" and owned[1 - i]:
            target = rng.choice(sorted(owned[1 - i]))
            assert http.get(f"/v1/persons/{target}", headers=me["auth"]).status_code == 404
            assert http.delete(f"/v1/persons/{target}", headers=me["auth"]).status_code == 404
            assert enrol(http, me, target, photos[0]).status_code == 404
        elif op == "delete":
            victim = rng.choice(sorted(owned[i]))
            assert http.delete(f"/v1/persons/{victim}", headers=me["auth"]).status_code == 204
            owned[i].discard(victim)
        listed = {p["person_id"] for p in http.get("/v1/persons", params={"limit": 1000}, headers=me["auth"]).json()["persons"]}
        assert listed == owned[i]


def test_rotated_api_key_revokes_the_old_one(http, admin):
    tenant = new_tenant(http, admin, "rotating")
    r = http.post(f"/v1/tenants/{tenant['id']}/api-keys", headers=admin)
    assert r.status_code == 201
    assert http.get("/v1/persons", headers=tenant["auth"]).status_code == 401
    assert http.get("/v1/persons", headers={"Authorization": f"Bearer {r.json()['api_key']}"}).status_code == 200


def db_bytes(data_dir, tenant_id) -> bytes:
    base = data_dir / "tenants" / tenant_id / "embeddings.db"
    return b"".join(p.read_bytes() for p in (base, base.with_name(base.name + "-wal")) if p.exists())


def test_db_file_never_holds_an_embedding(http, gallery, identity_photos, data_dir):
    tenant, _ = gallery
    content = db_bytes(data_dir, tenant["id"])
    assert content
    for photos in identity_photos.values():
        r = http.post("/v1/embed", json={"image": b64(photos[0].read_bytes())})
        vector = np.asarray(r.json()["faces"][0]["embedding"], np.float32)
        raw = vector.tobytes()
        assert raw not in content and raw[:16] not in content and raw[-16:] not in content


def test_deletion_leaves_no_trace(http, admin, identity_photos, data_dir):
    tenant = new_tenant(http, admin, "forgetful")
    pid = create_person(http, tenant, external_id="ext-forget-me-please")
    face_id = enrol(http, tenant, pid, identity_photos["kit_harington"][0]).json()["face_id"]
    keep = create_person(http, tenant, external_id="ext-keep")
    enrol(http, tenant, keep, identity_photos["obama"][0])
    assert search(http, tenant, identity_photos["kit_harington"][1].read_bytes())["faces"][0]["matches"]
    assert http.delete(f"/v1/persons/{pid}/faces/{face_id}", headers=tenant["auth"]).status_code == 204
    assert http.delete(f"/v1/persons/{pid}", headers=tenant["auth"]).status_code == 204
    assert search(http, tenant, identity_photos["kit_harington"][1].read_bytes())["faces"][0]["matches"] == []
    content = db_bytes(data_dir, tenant["id"])
    assert face_id.encode() not in content and b"ext-forget-me-please" not in content and pid.encode() not in content
    assert keep.encode() in content and b"ext-keep" not in content  # the scan sees the survivor; its external id is sealed


def test_deleting_a_tenant_removes_its_files_and_keys(http, admin, identity_photos, data_dir):
    tenant = new_tenant(http, admin, "leaving")
    enrol(http, tenant, create_person(http, tenant), identity_photos["biden"][0])
    assert (data_dir / "tenants" / tenant["id"]).is_dir()
    assert http.delete(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204
    assert not (data_dir / "tenants" / tenant["id"]).exists()
    assert http.get(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 404
    assert http.get("/v1/persons", headers=tenant["auth"]).status_code == 401


# ---- durability -------------------------------------------------------------------------------------------
def supervisor():
    from ray import serve

    return serve.get_deployment_handle("TenantSupervisor", app_name="securegate")


def tenant_of(key):
    return supervisor().authenticate.remote(key).result()


def test_evicted_tenant_reactivates_with_everything(http, gallery, identity_photos):
    tenant, persons = gallery
    assert supervisor().evict.remote(tenant["id"]).result() is True
    assert tenant["id"] not in supervisor().active_tenants.remote().result()
    result = search(http, tenant, identity_photos["obama"][1].read_bytes())
    assert result["faces"][0]["matches"][0]["person_id"] == persons["obama"]
    assert tenant["id"] in supervisor().active_tenants.remote().result()


def test_kill_9_during_enrolment_loses_nothing_acknowledged(http, admin, data_dir):
    """SIGKILL the shard actor in the middle of a burst of enrolments (vectors straight to the TenantSupervisor, as
    a Python caller would): every acknowledged face is there after reactivation, no row is half-written."""
    import asyncio

    import ray

    from tenancy import operations as op
    from tenancy.actors import NAMESPACE, actor_name

    def actor_pid() -> int:
        return ray.get(ray.get_actor(actor_name(t.tenant_id), namespace=NAMESPACE).pid.remote())

    tenant = new_tenant(http, admin, "crashy")
    t = tenant_of(tenant["key"])
    caller = op.ApiKeyCaller(tenant["key"])
    person = supervisor().create_person.remote(op.CreatePerson(caller)).result().person_id
    pid = actor_pid()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((60, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

    async def burst():
        async def one(i):
            try:
                added = await supervisor().add_samples.remote(op.AddSamples(caller, person, vectors[i][None], t.model))
                return added.face_ids[0]
            except Exception as exc:
                return exc

        tasks = [asyncio.create_task(one(i)) for i in range(60)]
        while sum(t.done() for t in tasks) < 5:  # some acknowledged, most still in flight
            await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        return await asyncio.gather(*tasks)

    results = asyncio.run(burst())
    acked = {r for r in results if isinstance(r, str)}
    failed = [r for r in results if not isinstance(r, str)]
    assert acked and failed, "the kill must land mid-burst"
    deadline = time.time() + 60
    while True:  # Ray restarts the actor; activation re-reads the file
        try:
            view = supervisor().get_person.remote(op.GetPerson(caller, person)).result()
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    stored = {f.face_id for f in view.faces}
    assert acked <= stored
    assert actor_pid() != pid
    # Every stored row decrypts (activation would have failed otherwise) and is searchable.
    info = supervisor().tenant_info.remote(t.tenant_id).result()
    assert info["faces"] == len(stored)


def test_tampered_or_moved_rows_fail_with_a_clear_code(http, admin, identity_photos, data_dir):
    a = new_tenant(http, admin, "victim")
    b = new_tenant(http, admin, "thief")
    pa = create_person(http, a)
    enrol(http, a, pa, identity_photos["obama"][0])
    pb = create_person(http, b)
    enrol(http, b, pb, identity_photos["biden"][0])
    for t in (a, b):
        supervisor().evict.remote(t["id"]).result()
    # Move a's sealed row into b's file under b's person: it must not decrypt there.
    src = apsw.Connection(str(data_dir / "tenants" / a["id"] / "embeddings.db"))
    row = src.execute("SELECT face_id, sealed, key_version, det_score, quality, created_at FROM faces").fetchone()
    src.close()
    dst = apsw.Connection(str(data_dir / "tenants" / b["id"] / "embeddings.db"))
    face_id, sealed, *rest = row
    dst.execute("INSERT INTO faces (face_id, person_id, sealed, key_version, det_score, quality, created_at) "
                "VALUES (?,?,?,?,?,?,?)", (face_id, pb, sealed, *rest))
    dst.close()
    r = http.post("/v1/search", json={"image": b64(identity_photos["obama"][1].read_bytes())}, headers=b["auth"])
    assert r.status_code == 500 and r.json()["error"]["code"] == "corrupt_record" and r.json()["error"]["face_id"] == face_id
    # Flip one bit of a's own ciphertext: a fails the same way.
    conn = apsw.Connection(str(data_dir / "tenants" / a["id"] / "embeddings.db"))
    blob = bytearray(sealed)
    blob[-1] ^= 1  # a bit of the GCM tag
    conn.execute("UPDATE faces SET sealed=? WHERE face_id=?", (bytes(blob), face_id))
    conn.close()
    r = http.post("/v1/search", json={"image": b64(identity_photos["obama"][1].read_bytes())}, headers=a["auth"])
    assert r.status_code == 500 and r.json()["error"]["code"] == "corrupt_record"


def test_matching_on_centroids(http, admin, identity_photos):
    """Tenant setting match_on=centroid: search ranks persons by their centroid, verify uses it too."""
    tenant = new_tenant(http, admin, "centroids", settings={"match_on": "centroid"})
    persons = {}
    for who in ("obama", "biden"):
        persons[who] = create_person(http, tenant, external_id=who)
        for photo in identity_photos[who][:2]:
            assert enrol(http, tenant, persons[who], photo).status_code == 201
    result = search(http, tenant, identity_photos["obama"][2].read_bytes(), top_k=2)
    top = result["faces"][0]["matches"][0]
    assert top["external_id"] == "obama" and top["face_id"] is None
    r = http.post("/v1/verify", json={"image": b64(identity_photos["obama"][3].read_bytes()), "person_id": persons["obama"]},
                  headers=tenant["auth"]).json()
    assert r["match"] is True and r["similarity"] == r["centroid_similarity"]


def test_idle_tenants_are_evicted_and_their_memory_returned(http, admin, identity_photos):
    tenant = new_tenant(http, admin, "idle")
    enrol(http, tenant, create_person(http, tenant), identity_photos["obama"][0])
    assert tenant["id"] in supervisor().active_tenants.remote().result()
    time.sleep(0.2)
    evicted = supervisor().evict_idle.remote(older_than_s=0.1).result()
    assert tenant["id"] in evicted and tenant["id"] not in supervisor().active_tenants.remote().result()
    import ray

    with pytest.raises(ValueError):  # the actor is gone, and with it the decrypted vectors
        ray.get_actor(f"tenant-shard:{tenant['id']}", namespace="securegate")


def test_readme_tenancy_snippet_runs(app, http, admin, identity_photos, tmp_path, monkeypatch):
    """The tenancy example of docs/api.md, executed as written against the running app."""
    snippet = doc_snippet("tenancy-handle-example")
    tenant = new_tenant(http, admin, "readme")
    monkeypatch.setenv("SECUREGATE_API_KEY", tenant["key"])
    (tmp_path / "alice_1.jpg").write_bytes(identity_photos["rose_leslie"][0].read_bytes())
    (tmp_path / "alice_2.jpg").write_bytes(identity_photos["rose_leslie"][1].read_bytes())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["found"]["faces"][0]["matches"][0]["external_id"] == "alice"


def test_audit_log_records_who_did_what(http, admin, identity_photos, data_dir):
    tenant = new_tenant(http, admin, "audited")
    key_id = tenant["key"].split("_")[1]
    pid = create_person(http, tenant, external_id="audited-person")
    face_id = enrol(http, tenant, pid, identity_photos["obama"][0]).json()["face_id"]
    search(http, tenant, identity_photos["obama"][1].read_bytes())
    http.post("/v1/verify", json={"image": b64(identity_photos["obama"][2].read_bytes()), "person_id": pid}, headers=tenant["auth"])
    assert enrol(http, tenant, "f" * 32, identity_photos["obama"][0]).status_code == 404
    http.delete(f"/v1/persons/{pid}/faces/{face_id}", headers=tenant["auth"])
    http.patch(f"/v1/tenants/{tenant['id']}", json={"settings": {"default_threshold": 0.5}}, headers=admin)

    r = http.get("/v1/audit", headers=tenant["auth"])
    assert r.status_code == 200
    events = r.json()["events"]
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("tenant.create", "ok"), ("person.create", "ok"), ("face.enrol", "ok"), ("search", "ok"), ("verify", "ok"),
        ("face.enrol", "NotFound"), ("face.delete", "ok"), ("tenant.update", "ok")]
    assert {e["actor"] for e in events if e["action"] != "tenant.create" and e["action"] != "tenant.update"} == {f"key:{key_id}"}
    assert events[3]["counts"] == {"faces": 1, "matches": 1}
    later = http.get("/v1/audit", params={"since": events[4]["seq"]}, headers=tenant["auth"]).json()["events"]
    assert [e["seq"] for e in later] == [e["seq"] for e in events[5:]]
    # Never an image or a vector: the tenant file that holds the audit chain has no embedding or image bytes.
    audit_bytes = (data_dir / "tenants" / tenant["id"] / "embeddings.db").read_bytes()
    vector = np.asarray(http.post("/v1/embed", json={"image": b64(identity_photos["obama"][0].read_bytes())}).json()["faces"][0]["embedding"], np.float32)
    assert vector.tobytes()[:16] not in audit_bytes
    assert identity_photos["obama"][0].read_bytes()[:64] not in audit_bytes
    # Another tenant's key sees only its own log.
    other = new_tenant(http, admin, "audited-other")
    assert [e["action"] for e in http.get("/v1/audit", headers=other["auth"]).json()["events"]] == ["tenant.create"]


def test_retention_deletes_old_faces_for_real(http, admin, identity_photos, data_dir):
    tenant = new_tenant(http, admin, "retained", settings={"retention_days": 1})
    pid = create_person(http, tenant, external_id="short-lived")
    face_id = enrol(http, tenant, pid, identity_photos["biden"][0]).json()["face_id"]
    assert search(http, tenant, identity_photos["biden"][1].read_bytes())["faces"][0]["matches"]
    expired = supervisor().enforce_retention.remote(now=time.time() + 2 * 86400).result()
    assert expired[tenant["id"]] == 1
    assert search(http, tenant, identity_photos["biden"][1].read_bytes())["faces"][0]["matches"] == []
    assert http.get(f"/v1/persons/{pid}", headers=tenant["auth"]).json()["faces"] == []
    assert face_id.encode() not in db_bytes(data_dir, tenant["id"])
    events = http.get("/v1/audit", headers=tenant["auth"]).json()["events"]
    assert ("retention", "face.expire", "ok") in [(e["actor"], e["action"], e["outcome"]) for e in events]


def test_rate_limited_tenant_gets_429_with_retry_after(http, admin):
    tenant = new_tenant(http, admin, "limited", settings={"rate_limit_per_s": 0.2, "rate_limit_burst": 3})
    statuses = [http.get("/v1/persons", headers=tenant["auth"]) for _ in range(5)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    other = new_tenant(http, admin, "unlimited")
    assert all(http.get("/v1/persons", headers=other["auth"]).status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/v1/search", {"image": "aGk=", "top_k": 10**9}, "invalid_request"),
        ("/v1/search", {"image": "aGk=", "top_k": "five"}, "invalid_request"),
        ("/v1/search", {"image": "aGk=", "threshold": -5}, "invalid_request"),
        ("/v1/search", {"image": ["not", "a", "string"]}, "invalid_request"),
        ("/v1/persons", {"external_id": "x" * 10_000}, "invalid_request"),
        ("/v1/persons", {"external_id": ""}, "invalid_request"),
        ("/v1/persons", {"metadata": "not an object"}, "invalid_request"),
        ("/v1/persons", {"unexpected": 1}, "invalid_request"),
    ],
    ids=["huge-top_k", "top_k-type", "negative-threshold", "image-type", "long-external_id", "empty-external_id",
         "metadata-type", "unknown-field"],
)
def test_hostile_tenant_requests_get_400(http, gallery, path, body, code):
    tenant, _ = gallery
    r = http.post(path, json=body, headers=tenant["auth"])
    assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text


def test_unicode_external_id_and_metadata_round_trip(http, gallery):
    tenant, _ = gallery
    external_id = "José-李-😀-" + "ü" * 100
    metadata = {"名前": "テスト", "nested": {"emoji": "👩‍💻", "list": [1, 2.5, None, True]}}
    pid = create_person(http, tenant, external_id=external_id, metadata=metadata)
    view = http.get(f"/v1/persons/{pid}", headers=tenant["auth"]).json()
    assert view["external_id"] == external_id and view["metadata"] == metadata
    assert http.delete(f"/v1/persons/{pid}", headers=tenant["auth"]).status_code == 204


def test_framework_level_refusals_use_our_error_shape(http, gallery):
    tenant, _ = gallery
    r = http.get("/v1/persons", params={"cursor": "not-a-cursor"}, headers=tenant["auth"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = http.post("/v1/detect", content=b"\x08\xe9", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = http.put("/v1/detect")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = http.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_running_app_writes_only_private_files(http, gallery, data_dir):
    """Issue 17 §4: after real enrolments, audits and key creation through the app, every directory SecureGate
    made under the data dir is 0700 and every file 0600 (SQLite's -wal/-shm included): no other local user
    reads a name, a key or a sealed vector. media/ is the operator's (clips the server may read), not ours."""
    tenant, _ = gallery
    assert http.get("/v1/audit", headers=tenant["auth"]).status_code == 200
    ours = [p for p in data_dir.rglob("*") if p.relative_to(data_dir).parts[0] != "media"]
    names = {p.relative_to(data_dir).as_posix() for p in ours}
    here = f"tenants/{tenant['id']}"
    assert {"registry.db", "registry.db-wal", "admin_token", "keys/root.key", "keys/keystore.db",
            f"{here}/embeddings.db", "org_audit.db", "org_audit.db-wal", "rotations.db"} <= names, sorted(names)
    modes = {p.relative_to(data_dir).as_posix(): oct(p.stat().st_mode & 0o777) for p in ours}
    assert {p: m for p, m in modes.items() if m != ("0o700" if (data_dir / p).is_dir() else "0o600")} == {}
