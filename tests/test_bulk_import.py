"""Bulk import (issue 18 §1) through the running application and the real CLI, on the shared photos: persons
by external id, refusals per photo with their reasons, re-runs that skip what is enrolled, and searches after."""

import base64
import csv
import json

import pytest

from cli.main import main as securegate
from securegate.client import SecureGateClient


@pytest.fixture(scope="module")
def tenant(app, data_dir, http):
    http.get("/v1/readyz")  # the TenantSupervisor has started and written the token
    token = (data_dir / "admin_token").read_text().strip()
    r = http.post("/v1/tenants", json={"name": "bulk-import"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


def run_cli(app, tenant, tmp_path, *args) -> dict:
    report = tmp_path / "refused.csv"
    code = securegate(["import", *args, "--url", app[1], "--api-key", tenant, "--report", str(report), "--no-progress"])
    assert code == 0
    with open(report, newline="") as fh:
        return {"refused": list(csv.DictReader(fh))}


@pytest.fixture(scope="module")
def imported(app, tenant, faces_root, identity_photos, tmp_path_factory):
    """The identities folder imported once by the CLI: (first run's report rows, persons by external id)."""
    report = run_cli(app, tenant, tmp_path_factory.mktemp("first"), str(faces_root / "identities"))
    with SecureGateClient(app[1], api_key=tenant) as sg:
        persons = {p.external_id: sg.get_person(p.person_id) for p in sg.iter_persons()}
    return report["refused"], persons


def test_every_identity_becomes_a_person_with_its_faces(imported, identity_photos):
    refused, persons = imported
    assert set(persons) == set(identity_photos)
    refused_by_person = {}
    for row in refused:
        refused_by_person.setdefault(row["external_id"], []).append(row)
    for who, photos in identity_photos.items():
        # Every photo is either a face of its person or in the report with a reason.
        assert len(persons[who].faces) + len(refused_by_person.get(who, [])) == len(photos), who
        assert len(persons[who].faces) >= 1, who
    assert all(row["code"] in ("no_face", "multiple_faces", "low_quality") for row in refused)


def test_a_rerun_skips_everything_enrolled(app, tenant, imported, faces_root, identity_photos, tmp_path, capsys):
    refused, before = imported
    capsys.readouterr()
    report = run_cli(app, tenant, tmp_path, str(faces_root / "identities"))
    counts = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    total = sum(len(p) for p in identity_photos.values())
    assert counts["enrolled"] == 0 and counts["skipped"] == total - len(refused) and counts["photos"] == total
    assert len(report["refused"]) == len(refused)  # refused photos are tried again, and refused again
    with SecureGateClient(app[1], api_key=tenant) as sg:
        after = {p.external_id: len(sg.get_person(p.person_id).faces) for p in sg.iter_persons()}
    assert after == {who: len(p.faces) for who, p in before.items()}


def test_scenes_and_a_non_image_are_refused_with_their_reasons(app, tenant, faces_root, tmp_path):
    (tmp_path / "people.csv").write_text(
        "external_id,path\n"
        f"pair,{faces_root / 'scenes' / 'kit_with_rose.jpg'}\n"
        f"trio,{faces_root / 'scenes' / 'obama_and_biden.jpg'}\n"
        f"notes,{faces_root / 'manifest.csv'}\n")
    report = run_cli(app, tenant, tmp_path, "--csv", str(tmp_path / "people.csv"))
    by_id = {row["external_id"]: row for row in report["refused"]}
    assert by_id["pair"]["code"] == "multiple_faces" and len(json.loads(by_id["pair"]["details"])["faces"]) == 2
    assert by_id["trio"]["code"] == "multiple_faces" and len(json.loads(by_id["trio"]["details"])["faces"]) == 3
    assert by_id["notes"]["code"] == "invalid_image"
    with SecureGateClient(app[1], api_key=tenant) as sg:  # a refused photo creates no person
        assert not {"pair", "trio", "notes"} & {p.external_id for p in sg.iter_persons()}


def test_low_quality_is_refused_with_the_failed_gates(app, tenant, identity_photos):
    """A photo shrunk below the face-size gate: refused per item, the batch's other photo enrolled."""
    import cv2

    photo = identity_photos["obama"][0]
    small = cv2.imread(str(photo))
    small = cv2.resize(small, (small.shape[1] // 8, small.shape[0] // 8))
    ok, encoded = cv2.imencode(".jpg", small)
    with SecureGateClient(app[1], api_key=tenant) as sg:
        answer = sg.import_faces([{"external_id": "tiny-obama", "image": encoded.tobytes()},
                                  {"external_id": "biden-again", "image": identity_photos["biden"][0]}])
    tiny, biden = answer.items
    assert tiny.status == "refused" and tiny.error.code in ("low_quality", "no_face")
    if tiny.error.code == "low_quality":
        assert any(reason["gate"] == "face_size" for reason in tiny.error.reasons)
    assert biden.status == "enrolled" and biden.person_id and biden.face_id
    assert (answer.enrolled, answer.refused) == (1, 1)


def test_a_search_afterwards_finds_the_right_people(app, tenant, imported, faces_root):
    _, persons = imported
    with SecureGateClient(app[1], api_key=tenant) as sg:
        found = sg.search(faces_root / "scenes" / "kit_with_rose.jpg", top_k=1)
    names = {face.matches[0].external_id for face in found.faces if face.matches}
    assert names == {"kit_harington", "rose_leslie"}
    assert {m.person_id for f in found.faces for m in f.matches} == {persons["kit_harington"].person_id, persons["rose_leslie"].person_id}


def test_request_bounds(http, tenant):
    auth = {"Authorization": f"Bearer {tenant}"}
    image = base64.b64encode(b"not a photo").decode()
    too_many = {"items": [{"external_id": f"p{k}", "image": image} for k in range(65)]}
    r = http.post("/v1/persons/import", json=too_many, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    r = http.post("/v1/persons/import", json={"items": [{"external_id": "x", "image": "%%%"}]}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_image"
    assert http.post("/v1/persons/import", json={"items": [{"external_id": "x", "image": image}]}).status_code == 401
