"""The audit logs through the running application (issue 17 §2): a tenant verifies its own chain, an admin
verifies any tenant's and the org's (HTTP and `securegate audit verify`), and the org audit pages admin
actions, root-key rotations and the erasure receipt of a deleted tenant."""

import json

from cli.main import main as securegate
from tests.test_tenancy_api import admin, create_person, enrol, new_tenant  # noqa: F401 - admin is a fixture


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

    events = http.get("/v1/admin/audit", params={"limit": 1000}, headers=admin).json()["events"]
    mine = [(e["action"], e["actor"]) for e in events if e["details"].get("tenant_id") == tenant["id"]]
    assert [action for action, _ in mine] == ["tenant.create", "tenant.erase"], mine
    assert all(principal.startswith("admin") for _, principal in mine), mine  # admin, or admin:<key name>
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
    verified = json.loads(capsys.readouterr().out)
    assert verified["intact"] and verified["unsealed_tail"] == 0 and verified["last_checkpoint_seq"] >= receipt["seq"]
    assert securegate(["audit", "verify", "--tenant", tenant["id"], "--url", app[1], "--admin-token", token]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "not_found"
