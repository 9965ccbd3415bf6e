"""Admin keys through the running application (issue 17 §3): every admin endpoint needs its one scope, a
revoked key is refused at once on every TenantSupervisor replica, admin actions carry the key's name, the
bootstrap token is revocable, and no answer or log line ever holds a secret."""

from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path

import httpx
import pytest

from cli import main as cli
from deployments.admin_keys import ADMIN_SCOPES
from tests.cli_output import printed_json
from tenancy.admin_keys import SCOPES

# Every admin route: (method, path template, handle API method). Checked against the OpenAPI document, so a
# new admin route must be added here (and to ADMIN_SCOPES) before this test passes.
ADMIN_ROUTES = [
    ("GET", "/v1/tenants", "list_tenants"),
    ("GET", "/v1/tenants/{tenant_id}", "get_tenant"),
    ("POST", "/v1/tenants", "create_tenant"),
    ("PATCH", "/v1/tenants/{tenant_id}", "update_tenant"),
    ("DELETE", "/v1/tenants/{tenant_id}", "delete_tenant"),
    ("POST", "/v1/tenants/{tenant_id}/api-keys", "rotate_api_key"),
    ("GET", "/v1/admin/keys/status", "key_status"),
    ("POST", "/v1/admin/keys/rotate-root", "rotate_root_key"),
    ("POST", "/v1/tenants/{tenant_id}/keys/rotate", "rotate_tenant_key"),
    ("POST", "/v1/admin/tenants/{tenant_id}/migrate", "migrate_tenant"),
    ("GET", "/v1/admin/tenants/{tenant_id}/migrate", "migration_status"),
    ("GET", "/v1/admin/tenants/{tenant_id}", "tenant_placement"),
    ("GET", "/v1/admin/audit", "org_audit"),
    ("GET", "/v1/admin/audit/verify", "admin_verify_audit"),
    ("GET", "/v1/admin/erasure-receipts/{tenant_id}", "erasure_receipt"),
    ("GET", "/v1/admin-keys", "list_admin_keys"),
    ("POST", "/v1/admin-keys", "create_admin_key"),
    ("DELETE", "/v1/admin-keys/{name}", "revoke_admin_key"),
]


class Recorder:
    """An httpx client that keeps every answer body, for the no-secret check at the end of the module."""

    def __init__(self, client: httpx.Client) -> None:
        self.client, self.bodies, self.secrets = client, [], []

    def __call__(self, method: str, path: str, token: str, **kwargs) -> httpx.Response:
        r = self.client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        body = r.text
        if r.status_code == 201 and path.endswith("/v1/admin-keys"):
            secret = r.json()["admin_key"]  # shown once, here: every other byte of the answer is checked
            self.secrets.append(secret)
            body = body.replace(json.dumps(secret), '"<the new key>"')
        self.bodies.append(body)
        return r

    def new_key(self, token: str, name: str, scopes) -> str:
        r = self(
            "POST", "/v1/admin-keys", token, json={"name": name, "scopes": list(scopes)})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == name and r.json()["admin_key"].startswith(f"sgadmin_{name}_")
        return r.json()["admin_key"]


@pytest.fixture(scope="module")
def bootstrap(app, http, data_dir) -> str:
    assert http.get("/v1/readyz").status_code == 200  # the TenantSupervisor has written the first-start token
    return (data_dir / "admin_token").read_text().strip()


@pytest.fixture(scope="module")
def api(http) -> Recorder:
    return Recorder(http)


def _tenant(api, token) -> str:
    r = api("POST", "/v1/tenants", token, json={"name": "admin-keys-target"})
    assert r.status_code == 201, r.text
    return r.json()["tenant_id"]


def test_the_scope_table_covers_every_admin_route(http):
    schema = http.get("/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in schema["paths"].items() for method, op in ops.items()
                  if "admin" in op.get("tags", []) or path.startswith(("/v1/admin/", "/v1/admin-keys"))}
    assert documented == {(m, p) for m, p, _ in ADMIN_ROUTES}
    assert sorted(e for _, _, e in ADMIN_ROUTES) == sorted(ADMIN_SCOPES)
    assert set(ADMIN_SCOPES.values()) == set(SCOPES)  # no scope that allows nothing


def test_each_admin_endpoint_needs_its_scope(api, bootstrap):
    """For each route: a key holding every scope but the route's gets 403 `forbidden` and changes nothing; a
    key holding only that scope is served. Admin actions are recorded under the key's name."""
    only = {scope: api.new_key(bootstrap, f"only-{scope.replace(':', '-')}", [scope]) for scope in SCOPES}
    all_but = {scope: api.new_key(bootstrap, f"all-but-{scope.replace(':', '-')}", [s for s in SCOPES if s != scope])
               for scope in SCOPES}
    tenant_id = _tenant(api, bootstrap)
    before = {t["tenant_id"] for t in api("GET", "/v1/tenants", bootstrap).json()}

    def request(endpoint: str, allowed: bool) -> tuple[str, str, dict, int]:
        """The route's method, a concrete path, request options and the status it answers when allowed; the
        allowed tenant deletion aims at a throwaway tenant (each tenant costs a shard actor: few are made)."""
        chosen = {
            "list_tenants": ("GET", "/v1/tenants", {}, 200),
            "get_tenant": ("GET", f"/v1/tenants/{tenant_id}", {}, 200),
            "tenant_placement": ("GET", f"/v1/admin/tenants/{tenant_id}", {}, 200),
            "create_tenant": ("POST", "/v1/tenants", {"json": {"name": "made-by-scope"}}, 201),
            "update_tenant": ("PATCH", f"/v1/tenants/{tenant_id}", {"json": {"settings": {"default_threshold": 0.5}}}, 200),
            "delete_tenant": ("DELETE", "/v1/tenants/{throwaway}", {}, 204),
            "rotate_api_key": ("POST", f"/v1/tenants/{tenant_id}/api-keys", {}, 201),
            "key_status": ("GET", "/v1/admin/keys/status", {}, 200),
            "rotate_root_key": ("POST", "/v1/admin/keys/rotate-root", {}, 200),
            "rotate_tenant_key": ("POST", f"/v1/tenants/{tenant_id}/keys/rotate", {}, 202),
            # This app serves one pack: an allowed key gets past the scope to the refusals (unknown pack, no
            # migration yet); tests/test_model_migration.py runs migrations.
            "migrate_tenant": ("POST", f"/v1/admin/tenants/{tenant_id}/migrate", {"json": {"to": "no-such-pack"}}, 400),
            "migration_status": ("GET", f"/v1/admin/tenants/{tenant_id}/migrate", {}, 404),
            "org_audit": ("GET", "/v1/admin/audit", {}, 200),
            "admin_verify_audit": ("GET", "/v1/admin/audit/verify", {}, 200),
            "erasure_receipt": ("GET", f"/v1/admin/erasure-receipts/{tenant_id}", {}, 404),  # the tenant lives on
            "list_admin_keys": ("GET", "/v1/admin-keys", {}, 200),
            "create_admin_key": ("POST", "/v1/admin-keys", {"json": {"name": "made-{who}", "scopes": ["admin-keys:write"]}}, 201),
            "revoke_admin_key": ("DELETE", "/v1/admin-keys/{victim}", {}, 200),
        }[endpoint]
        if endpoint == "delete_tenant":
            method, path, options, ok = chosen
            return method, path.format(throwaway=_tenant(api, bootstrap) if allowed else tenant_id), options, ok
        return chosen

    for _, _, endpoint in ADMIN_ROUTES:
        scope = ADMIN_SCOPES[endpoint]
        for who, token, allowed in (("without", all_but[scope], False), ("with", only[scope], True)):
            method, path, options, ok = request(endpoint, allowed)
            if endpoint == "revoke_admin_key":
                api.new_key(bootstrap, f"victim-{who}", ["audit:read"])
                path = path.format(victim=f"victim-{who}")
            if endpoint == "create_admin_key":
                options = {"json": {**options["json"], "name": f"made-{who}"}}
            r = api(method, path, token, **options)
            if allowed:
                assert r.status_code == ok, (endpoint, r.text)
            else:
                assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (endpoint, r.text)
                assert scope in r.json()["error"]["message"]
    # Refused calls changed nothing: the one tenant made is the allowed create's.
    made = {t["tenant_id"]: t["name"] for t in api("GET", "/v1/tenants", bootstrap).json()}
    assert sorted(n for i, n in made.items() if i not in before and n == "made-by-scope") == ["made-by-scope"]
    names = {k["name"]: k for k in api("GET", "/v1/admin-keys", bootstrap).json()["admin_keys"]}
    assert "made-with" in names and "made-without" not in names
    assert names["victim-with"]["revoked_at"] is not None and names["victim-without"]["revoked_at"] is None

    # Each admin action in the org audit carries the name of the key that made it.
    events, page = [], [None] * 1000
    while len(page) == 1000:  # every page (admin reads are recorded too: it grows with each test, and each read)
        page = api("GET", "/v1/admin/audit", bootstrap, params={"since": events[-1]["seq"] if events else 0,
                                                                 "limit": 1000}).json()["events"]
        events += page
    actors = {(e["action"], e["actor"]) for e in events}
    assert ("tenant.create", "admin:only-tenants-write") in actors
    assert ("admin_key.revoke", "admin:only-admin-keys-write") in actors
    assert ("root_key.rotate", "admin:only-keys-rotate") in actors
    assert not any(e["actor"].startswith("admin:all-but-") for e in events)  # refusals did nothing
    assert ("admin.read", "admin:only-audit-read") in actors  # reads are recorded under the key's name too


def test_a_key_grants_only_scopes_it_holds(api, bootstrap):
    token = api.new_key(bootstrap, "key-admin", ["admin-keys:write", "tenants:read"])
    r = api("POST", "/v1/admin-keys", token, json={"name": "escalated", "scopes": ["keys:rotate"]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert api.new_key(token, "delegated", ["tenants:read"]).startswith("sgadmin_delegated_")
    r = api("POST", "/v1/admin-keys", bootstrap, json={"name": "delegated", "scopes": ["tenants:read"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"  # names are never reused
    for body in ({"name": "Bad_Name", "scopes": ["tenants:read"]}, {"name": "ok", "scopes": ["root"]},
                 {"name": "ok", "scopes": []}, {"name": "bootstrap", "scopes": ["tenants:read"]}):
        r = api("POST", "/v1/admin-keys", bootstrap, json=body)
        assert r.status_code in (400, 409) and r.json()["error"]["code"] in ("invalid_request", "conflict"), body
    assert api("DELETE", "/v1/admin-keys/never-made", bootstrap).status_code == 404


# ------------------------------------------------------------------------- two TenantSupervisor replicas
@pytest.fixture(scope="module")
def replicas(app, serve_port, models_dir, tmp_path_factory):
    """A second application over its own data dir whose TenantSupervisor runs 2 replicas (the session app runs
    one); its Ingress borrows the session app's model and key deployments, which admin keys never call."""
    from ray import serve

    from tests.side_apps import run_side_app

    data_dir = tmp_path_factory.mktemp("admin-replicas")
    run_side_app("admin-replicas", "/replicas", models_dir, data_dir, supervisor_options={"num_replicas": 2})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/replicas", timeout=120) as client:
            yield Recorder(client), data_dir
    finally:
        serve.delete("admin-replicas")


def _supervisor_calls(ray_cluster, outcome: str) -> dict[str, int]:
    """check_admin calls answered with `outcome` (OK/ERROR), per TenantSupervisor replica of the replicas app,
    from the replicas' own Serve logs."""
    logs = Path(ray_cluster._private.worker.global_worker.node.get_session_dir_path()) / "logs" / "serve"
    return {f.name: f.read_text(errors="replace").count(f"-- CALL check_admin {outcome}")
            for f in logs.glob("replica_admin-replicas_TenantSupervisor_*.log")}


def _burst(api: Recorder, token: str, n: int = 16) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: api("GET", "/v1/tenants", token).status_code, range(n)))


def test_a_revoked_key_is_refused_at_once_on_every_replica(ray_cluster, replicas):
    api, data_dir = replicas
    bootstrap = (data_dir / "admin_token").read_text().strip()
    token = api.new_key(bootstrap, "short-lived", ["tenants:read"])
    for _ in range(20):  # both replicas have served the key (where a cache would now hold it)
        assert set(_burst(api, token)) == {200}
        served = _supervisor_calls(ray_cluster, "OK")
        if len(served) == 2 and all(served.values()):
            break
    assert len(served) == 2 and all(served.values()), served

    before = _supervisor_calls(ray_cluster, "ERROR")
    assert api("DELETE", "/v1/admin-keys/short-lived", bootstrap).status_code == 200  # one replica revokes
    for _ in range(20):  # every later call, on either replica, is refused
        assert set(_burst(api, token)) == {403}
        refused = {f: n - before.get(f, 0) for f, n in _supervisor_calls(ray_cluster, "ERROR").items()}
        if all(refused.values()):
            break
    assert len(refused) == 2 and all(refused.values()), refused


def test_the_bootstrap_token_can_be_revoked(replicas):
    api, data_dir = replicas
    bootstrap = (data_dir / "admin_token").read_text().strip()
    r = api("DELETE", "/v1/admin-keys/bootstrap", bootstrap)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"  # the last key able to make keys
    named = api.new_key(bootstrap, "operator", SCOPES)
    r = api("DELETE", "/v1/admin-keys/bootstrap", named)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert set(_burst(api, bootstrap, 8)) == {403}
    assert set(_burst(api, named, 8)) == {200}
    listed = {k["name"]: k for k in api("GET", "/v1/admin-keys", named).json()["admin_keys"]}
    assert listed["bootstrap"]["revoked_at"] is not None and listed["operator"]["revoked_at"] is None


def test_cli_creates_lists_and_revokes_admin_keys(app, api, bootstrap, data_dir, capsys):
    common = ["--url", app[1], "--data-dir", str(data_dir)]
    assert cli.main(["admin-keys", "create", "from-cli", "--scopes", "tenants:read, audit:read", *common]) == 0
    created = printed_json(capsys.readouterr().out)
    api.secrets.append(created["admin_key"])
    assert created["scopes"] == ["tenants:read", "audit:read"]
    assert api("GET", "/v1/tenants", created["admin_key"]).status_code == 200
    assert cli.main(["admin-keys", "list", *common]) == 0
    listed = capsys.readouterr().out
    assert "from-cli" in listed and created["admin_key"].split("_")[2] not in listed
    assert cli.main(["admin-keys", "revoke", "from-cli", *common]) == 0
    capsys.readouterr()
    assert api("GET", "/v1/tenants", created["admin_key"]).status_code == 403
    assert cli.main(["admin-keys", "create", "bad", "--scopes", "everything", *common]) == 1
    assert printed_json(capsys.readouterr().out)["error"]["code"] == "invalid_request"


def test_no_answer_or_log_line_holds_a_secret(ray_cluster, api, replicas, bootstrap):
    """Runs last in the module: every secret made above (and the first-start tokens) against every answer
    body recorded above and every file under the Ray session's log dir."""
    replica_api, replica_dir = replicas
    secrets = [*api.secrets, *replica_api.secrets, bootstrap, (replica_dir / "admin_token").read_text().strip()]
    assert len(secrets) > 20
    needles = {s for token in secrets for s in (token, token.split("_")[-1])}  # the key and its secret part
    bodies = api.bodies + replica_api.bodies
    assert len(bodies) > 50
    assert not [b for b in bodies if any(n in b for n in needles)]
    logs = Path(ray_cluster._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    files = [f for f in logs.rglob("*") if f.is_file()]
    assert any("admin-replicas" in f.name for f in files)  # the replicas' logs are among them
    pattern = re.compile("|".join(re.escape(n) for n in needles).encode())
    leaks = [f.name for f in files if pattern.search(f.read_bytes())]
    assert leaks == []
