"""`securegate persons ...` (the corrections commands) against the running application, on the shared photos:
each command run through `cli.main`, its effect checked over HTTP."""

from __future__ import annotations

import json

import pytest

from cli import main as cli
from tests.test_corrections import new_tenant, person


@pytest.fixture(scope="module")
def admin(app, data_dir, http) -> dict:
    assert http.get("/v1/readyz").status_code == 200
    return {"Authorization": f"Bearer {(data_dir / 'admin_token').read_text().strip()}"}


def persons(capsys, *args: str) -> tuple[int, dict | None, str]:
    """`securegate persons ARGS`: exit code, stdout as JSON (None when empty), stderr."""
    code = cli.main(["persons", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_persons_commands_reject_list_unreject_merge_and_move_a_face(app, http, admin, identity_photos, capsys,
                                                                       monkeypatch):
    tenant = new_tenant(http, admin, "cli-corrections")
    common = ["--url", app[1], "--api-key", tenant["key"]]
    obama, biden = identity_photos["obama"], identity_photos["biden"]
    wrong, (obama_face, misfiled) = person(http, tenant, "obama", obama[0], biden[0])  # biden's photo filed under obama
    right, _ = person(http, tenant, "biden")
    dup, (dup_face,) = person(http, tenant, "obama-again", obama[1])

    code, moved, _ = persons(capsys, "move-face", wrong, misfiled, "--to", right, *common)
    assert code == 0 and moved == {"face_id": misfiled, "person_id": right}
    assert [f["face_id"] for f in http.get(f"/v1/persons/{right}", headers=tenant["auth"]).json()["faces"]] == [misfiled]

    code, merged, _ = persons(capsys, "merge", wrong, dup, *common)
    assert code == 0 and merged == {"person_id": wrong, "merged_person_id": dup, "faces_moved": 1, "rejections_moved": 0,
                                    "events_relinked": 0}
    assert http.get(f"/v1/persons/{dup}", headers=tenant["auth"]).status_code == 404
    faces = http.get(f"/v1/persons/{wrong}", headers=tenant["auth"]).json()["faces"]
    assert sorted(f["face_id"] for f in faces) == sorted([obama_face, dup_face])

    # the key from the environment this time (as `securegate import` takes it)
    monkeypatch.setenv("SECUREGATE_API_KEY", tenant["key"])
    code, by_image, _ = persons(capsys, "reject", wrong, "--image", str(biden[1]), "--face-index", "0", "--url", app[1])
    assert code == 0 and by_image["person_id"] == wrong and len(by_image["rejection_ids"]) == 1
    code, by_face, _ = persons(capsys, "reject", wrong, "--face-id", misfiled, *common)
    assert code == 0 and len(by_face["rejection_ids"]) == 1

    code, listed, _ = persons(capsys, "rejections", wrong, *common)
    over_http = http.get(f"/v1/persons/{wrong}/rejections", headers=tenant["auth"]).json()
    assert code == 0 and listed == over_http
    assert sorted((r["rejection_id"], r["source"]) for r in listed["rejections"]) == sorted(
        [(by_image["rejection_ids"][0], "image"), (by_face["rejection_ids"][0], "face")])

    code, deleted, _ = persons(capsys, "unreject", wrong, by_image["rejection_ids"][0], *common)
    assert code == 0 and deleted == {"person_id": wrong, "rejection_id": by_image["rejection_ids"][0], "deleted": True}
    left = http.get(f"/v1/persons/{wrong}/rejections", headers=tenant["auth"]).json()["rejections"]
    assert [r["rejection_id"] for r in left] == by_face["rejection_ids"]


def test_persons_refusals_are_one_line_with_the_stable_code(app, http, admin, identity_photos, capsys, monkeypatch):
    monkeypatch.delenv("SECUREGATE_API_KEY", raising=False)
    tenant = new_tenant(http, admin, "cli-corrections-refused")
    common = ["--url", app[1], "--api-key", tenant["key"]]
    pid, (face,) = person(http, tenant, "someone", identity_photos["obama"][0])

    code, out, err = persons(capsys, "merge", pid, pid, *common)
    assert code == 1 and out is None
    assert err.splitlines() == [err.strip()] and err.startswith("securegate persons merge: 409 same_person:"), err
    code, out, err = persons(capsys, "unreject", pid, "0" * 32, *common)
    assert code == 1 and out is None and err.startswith("securegate persons unreject: 404 not_found:"), err
    code, out, err = persons(capsys, "move-face", pid, face, "--to", pid, *common)
    assert code == 1 and "409 same_person" in err and len(err.splitlines()) == 1, err
    assert [f["face_id"] for f in http.get(f"/v1/persons/{pid}", headers=tenant["auth"]).json()["faces"]] == [face]

    # usage errors stop before any request: no key, --face-index without --image
    with pytest.raises(SystemExit) as stopped:
        cli.main(["persons", "rejections", pid, "--url", app[1]])
    assert "pass --api-key or set SECUREGATE_API_KEY" in str(stopped.value.code)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["persons", "reject", pid, "--face-id", face, "--face-index", "1", *common])
    assert "--face-index picks a face of --image" in str(stopped.value.code)
    assert http.get(f"/v1/persons/{pid}/rejections", headers=tenant["auth"]).json()["rejections"] == []


def test_persons_find_by_external_id_over_http_client_and_cli(app, http, admin, capsys):
    """`GET /v1/persons?external_id=` (blind index: exact string only, no paging), the client's parameter and
    `securegate persons find --external-id`."""
    from securegate.client import InvalidRequestError, SecureGateClient

    tenant = new_tenant(http, admin, "cli-find")
    ids = {who: person(http, tenant, who)[0] for who in ("Ana", "ana", "anabel", "bo")}
    r = http.get("/v1/persons", params={"external_id": "Ana"}, headers=tenant["auth"])
    assert r.status_code == 200 and r.json()["next_cursor"] is None
    assert [(p["person_id"], p["external_id"]) for p in r.json()["persons"]] == [(ids["Ana"], "Ana")]
    for missing in ("an", "ANA", "anabel "):  # exact: no prefix, no case folding, no trimming
        assert http.get("/v1/persons", params={"external_id": missing}, headers=tenant["auth"]).json()["persons"] == []
    refused = http.get("/v1/persons", params={"external_id": "bo", "cursor": "x"}, headers=tenant["auth"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"
    assert http.get("/v1/persons", params={"external_id": ""}, headers=tenant["auth"]).status_code == 400

    with SecureGateClient(app[1], api_key=tenant["key"]) as client:
        assert [p.person_id for p in client.list_persons(external_id="anabel").persons] == [ids["anabel"]]
        with pytest.raises(InvalidRequestError):
            client.list_persons(cursor="x", external_id="bo")

    code, found, _ = persons(capsys, "find", "--external-id", "bo", "--url", app[1], "--api-key", tenant["key"])
    assert code == 0 and [p["person_id"] for p in found["persons"]] == [ids["bo"]]
    code, found, _ = persons(capsys, "find", "--external-id", "nobody", "--url", app[1], "--api-key", tenant["key"])
    assert code == 0 and found == {"persons": [], "next_cursor": None}
