"""The audit logs through the running application (issue 17 §2, issue 23 §5-6): a tenant verifies its own chain,
an admin verifies any tenant's and the org's (HTTP and `securegate audit verify`), cutting a chain's newest
entries with their checkpoints is reported as truncation, the org audit pages admin actions and admin reads,
root-key rotations and the erasure receipt of a deleted tenant, and that receipt is checked offline with
`cryptography` alone from the published public key."""

import base64
import json

import apsw
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from cli.main import main as securegate
from tests.cli_output import printed_json
from tests.side_apps import run_side_app
from tests.test_tenancy_api import admin, create_person, enrol, new_tenant  # noqa: F401 - admin is a fixture

# Entries the service adds on its own: each admin read, and the copies of tenant chains' checkpoints.
BOOKKEEPING = {"admin.read", "audit.mirror"}


def org_events(http, headers) -> list[dict]:
    """The whole org audit, page by page (admin reads make it grow with every test; each page read is one more
    entry, so a short page is the end)."""
    events, since = [], 0
    while True:
        page = http.get("/v1/admin/audit", params={"since": since, "limit": 1000}, headers=headers).json()
        events += page["events"]
        if len(page["events"]) < 1000:
            return events
        since = page["next_since"]


def cut(path, after_seq: int) -> None:
    """Delete a chain's entries after `after_seq` and every checkpoint that names them, from the real file."""
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute("DELETE FROM audit_chain WHERE seq > ?", (after_seq,))
        conn.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (after_seq,))
    conn.close()


def test_tenant_and_admin_verify_the_audit_and_the_org_audit_keeps_the_receipt(app, http, admin, identity_photos, capsys):  # noqa: F811
    tenant = new_tenant(http, admin, "verified")
    pid = create_person(http, tenant, external_id="verified-person")
    assert enrol(http, tenant, pid, identity_photos["obama"][0]).status_code == 201

    own = http.get("/v1/audit/verify", headers=tenant["auth"])
    assert own.status_code == 200, own.text
    assert own.json()["intact"] and own.json()["entries"] == 3 and own.json()["checkpoints"] >= 1, own.json()
    by_admin = http.get("/v1/admin/audit/verify", params={"tenant": tenant["id"]}, headers=admin).json()
    assert by_admin["intact"] and by_admin["entries"] == 3
    # A tenant key reads neither the org audit nor another chain through the admin routes.
    assert http.get("/v1/admin/audit", headers=tenant["auth"]).status_code in (401, 403)
    assert http.get("/v1/admin/audit/verify", headers=tenant["auth"]).status_code in (401, 403)

    assert http.post("/v1/admin/keys/rotate-root", headers=admin).status_code == 200
    assert http.delete(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204

    events = org_events(http, admin)
    mine = [(e["action"], e["actor"]) for e in events if e["details"].get("tenant_id") == tenant["id"]]
    assert [action for action, _ in mine if action not in BOOKKEEPING] == ["tenant.create", "tenant.erase"], mine
    assert ("admin.read", mine[0][1]) in mine  # the admin's verification of this tenant's chain, under its key
    assert all(principal.startswith("admin") for action, principal in mine if action != "audit.mirror"), mine
    receipt = [e for e in events if e["action"] == "tenant.erase" and e["details"]["tenant_id"] == tenant["id"]][0]
    assert {k: receipt["details"][k] for k in ("persons", "faces", "audit_entries")} == {"persons": 1, "faces": 1, "audit_entries": 3}
    assert receipt["details"]["key_ids"][0] == f"tek:{tenant['id']}"
    assert "verified-person" not in json.dumps(events)  # ids and counts, nothing the tenant gave us
    assert any(e["action"] == "root_key.rotate" and e["outcome"] == "ok" for e in events)
    page = http.get("/v1/admin/audit", params={"since": events[0]["seq"], "limit": 1}, headers=admin).json()
    assert [e["seq"] for e in page["events"]] == [events[1]["seq"]] and page["next_since"] == events[1]["seq"]

    # The CLI: the org audit is intact and signed up to the receipt (exit 0); a deleted tenant has no chain.
    token = admin["Authorization"].split(" ", 1)[1]
    assert securegate(["audit", "verify", "--url", app[1], "--admin-token", token]) == 0
    verified = printed_json(capsys.readouterr().out)
    assert verified["intact"] and verified["unsealed_tail"] == 0 and verified["last_checkpoint_seq"] >= receipt["seq"]
    assert securegate(["audit", "verify", "--tenant", tenant["id"], "--url", app[1], "--admin-token", token]) == 1
    assert printed_json(capsys.readouterr().out)["error"]["code"] == "not_found"


def verifies(pem: str, signature_b64: str, receipt: dict) -> bool:
    """What a data subject or a regulator runs: the receipt's canonical JSON (keys sorted, no spaces, UTF-8) checked
    against the signature with the published public key, with `cryptography` and nothing of SecureGate's."""
    message = json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        load_pem_public_key(pem.encode()).verify(base64.b64decode(signature_b64), message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def test_an_erasure_receipt_verifies_offline_with_the_published_key(http, admin, identity_photos):  # noqa: F811
    tenant = new_tenant(http, admin, "receipted")
    pid = create_person(http, tenant, external_id="receipted-person")
    assert enrol(http, tenant, pid, identity_photos["biden"][0]).status_code == 201
    assert http.get(f"/v1/admin/erasure-receipts/{tenant['id']}", headers=admin).status_code == 404  # not erased yet
    assert http.delete(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 204

    signed = http.get(f"/v1/admin/erasure-receipts/{tenant['id']}", headers=admin)
    assert signed.status_code == 200, signed.text
    receipt, signature = signed.json()["receipt"], signed.json()["signature"]
    assert receipt["type"] == "securegate.erasure-receipt/v1" and receipt["tenant_id"] == tenant["id"]
    assert (receipt["persons"], receipt["faces"]) == (1, 1) and receipt["key_ids"][0] == f"tek:{tenant['id']}"
    assert signature["algorithm"] == "ECDSA_P256_SHA256"
    # The key comes from the published list (no credential), not from the receipt's own copy.
    published = http.get("/v1/erasure-receipts/keys")
    assert published.status_code == 200, published.text
    keys = {k["key_id"]: k["public_key_pem"] for k in published.json()["keys"]}
    assert signature["public_key_pem"] == keys[signature["key_id"]]
    assert verifies(keys[signature["key_id"]], signature["value"], receipt)
    assert not verifies(keys[signature["key_id"]], signature["value"], {**receipt, "faces": 0})
    assert not verifies(keys[signature["key_id"]], signature["value"], {**receipt, "tenant_id": "t_someone_else"})
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert not verifies(stranger.decode(), signature["value"], receipt)  # another key does not check it
    assert "receipted-person" not in signed.text

    # The same receipt and signature are the org audit's `tenant.erase` entry; reading it was recorded too.
    events = org_events(http, admin)
    erased = [e for e in events if e["action"] == "tenant.erase" and e["details"]["tenant_id"] == tenant["id"]]
    assert erased and erased[0]["details"]["signature"]["value"] == signature["value"]
    reads = [e["details"] for e in events if e["action"] == "admin.read"]
    assert {"endpoint": "erasure_receipt", "tenant_id": tenant["id"]} in reads
    assert any(r["endpoint"] == "org_audit" for r in reads)


def test_admin_reads_are_in_the_org_audit(http, admin):  # noqa: F811
    tenant = new_tenant(http, admin, "looked-at")
    assert http.get("/v1/tenants", headers=admin).status_code == 200
    assert http.get(f"/v1/tenants/{tenant['id']}", headers=admin).status_code == 200
    assert http.get("/v1/admin/keys/status", headers=admin).status_code == 200
    events = org_events(http, admin)
    who = next(e["actor"] for e in events if e["action"] == "tenant.create" and e["details"]["tenant_id"] == tenant["id"])
    reads = [(e["actor"], e["details"]) for e in events if e["action"] == "admin.read"]
    assert who.startswith("admin:")  # the admin key's name (here the first-start `bootstrap` key)
    assert (who, {"endpoint": "list_tenants"}) in reads
    assert (who, {"endpoint": "get_tenant", "tenant_id": tenant["id"]}) in reads
    assert (who, {"endpoint": "key_status"}) in reads


def test_a_cut_tenant_chain_is_reported_truncated_by_the_api_and_the_cli(app, http, admin, identity_photos,  # noqa: F811
                                                                          data_dir, capsys):
    """The tenant's newest entries and the checkpoints naming them deleted from its file: the file alone verifies;
    the copy of its newest checkpoint in the org audit says it was cut."""
    from ray import serve

    from tenancy.actors import tenant_db_path

    tenant = new_tenant(http, admin, "cut")
    pid = create_person(http, tenant)
    assert enrol(http, tenant, pid, identity_photos["obama"][0]).status_code == 201
    # The tenant's actor closes (its head checkpointed); the TenantSupervisor mirrors that checkpoint into the org audit.
    assert serve.get_deployment_handle("TenantSupervisor", "securegate").evict.remote(tenant["id"]).result()
    intact = http.get("/v1/admin/audit/verify", params={"tenant": tenant["id"]}, headers=admin).json()
    assert intact["intact"] and intact["entries"] == 3 and intact["anchored_seq"] == 3, intact

    cut(tenant_db_path(data_dir, tenant["id"]), 1)
    for answer in (http.get("/v1/admin/audit/verify", params={"tenant": tenant["id"]}, headers=admin),
                   http.get("/v1/audit/verify", headers=tenant["auth"])):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["intact"], body["reason"], body["first_bad_seq"], body["entries"]) == (False, "truncated", 2, 1), body
        assert (body["anchored_seq"], body["anchored_in"]) == (3, "org_audit")
    token = admin["Authorization"].split(" ", 1)[1]
    assert securegate(["audit", "verify", "--tenant", tenant["id"], "--url", app[1], "--admin-token", token]) == 1
    assert printed_json(capsys.readouterr().out)["reason"] == "truncated"


@pytest.fixture(scope="module")
def side(app, serve_port, models_dir, tmp_path_factory):
    """An app over a data dir of its own, whose org audit this module may cut (the session app's stays whole)."""
    from ray import serve

    data = tmp_path_factory.mktemp("cut-org")
    run_side_app("audit-cut", "/audit-cut", models_dir, data)
    base = f"http://127.0.0.1:{serve_port}/audit-cut"
    try:
        yield base, data
    finally:
        serve.delete("audit-cut")


def test_a_cut_org_audit_is_reported_truncated_by_the_api_and_the_cli(side, http, capsys):
    base, data = side
    assert http.get(f"{base}/v1/readyz").status_code == 200  # the TenantSupervisor has written its admin token
    token = (data / "admin_token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    for k in range(3):
        assert http.post(f"{base}/v1/tenants", json={"name": f"org-cut-{k}"}, headers=headers).status_code == 201
    intact = http.get(f"{base}/v1/admin/audit/verify", headers=headers).json()
    assert intact["intact"] and intact["anchored_in"] == "key_store" and intact["anchored_seq"] == intact["entries"], intact
    head = intact["entries"]  # this verification's own read included: it is recorded (and anchored) before it runs

    cut(data / "org_audit.db", head - 3)
    found = http.get(f"{base}/v1/admin/audit/verify", headers=headers).json()
    # The read recorded before this check was appended after the cut: the chain ends at head - 2, the anchor at head.
    assert (found["intact"], found["reason"], found["anchored_seq"]) == (False, "truncated", head), found
    assert securegate(["audit", "verify", "--url", base, "--admin-token", token]) == 1
    assert printed_json(capsys.readouterr().out)["reason"] == "truncated"
