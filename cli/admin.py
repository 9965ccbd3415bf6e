"""`securegate keys|tenants|audit|admin-keys|migrate`: talk to a running service over its admin API."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def admin_client(ns: argparse.Namespace):
    """httpx client for the admin API. The token: --admin-token, $SECUREGATE_ADMIN_TOKEN, or the one the
    service generated into its data dir."""
    import httpx

    from securegate.settings import default_data_dir

    token = ns.admin_token or os.environ.get("SECUREGATE_ADMIN_TOKEN")
    if not token:
        path = Path(ns.data_dir or default_data_dir()) / "admin_token"
        if not path.exists():
            raise SystemExit(f"no admin token: pass --admin-token, set SECUREGATE_ADMIN_TOKEN, or point --data-dir at {path.parent}")
        token = path.read_text().strip()
    return httpx.Client(base_url=ns.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _print_response(response) -> int:
    if response.status_code == 204:
        return 0
    print(json.dumps(response.json(), indent=2))
    return 0 if response.is_success else 1


def cmd_keys(ns: argparse.Namespace) -> int:
    with admin_client(ns) as client:
        if ns.action == "status":
            return _print_response(client.get("/v1/admin/keys/status"))
        if ns.root == bool(ns.tenant):
            raise SystemExit("keys rotate: give exactly one of --root or --tenant ID")
        if ns.root:
            return _print_response(client.post("/v1/admin/keys/rotate-root"))
        return _print_response(client.post(f"/v1/tenants/{ns.tenant}/keys/rotate"))


def cmd_tenants(ns: argparse.Namespace) -> int:
    with admin_client(ns) as client:
        if ns.action == "create":
            settings = json.loads(ns.settings) if ns.settings else None
            return _print_response(client.post("/v1/tenants", json={"name": ns.name, "settings": settings}))
        if ns.action == "list":
            return _print_response(client.get("/v1/tenants"))
        if ns.action == "delete":
            return _print_response(client.delete(f"/v1/tenants/{ns.tenant_id}"))
        if ns.action == "show":  # the tenant and where each of its shard actors runs now
            return _print_response(client.get(f"/v1/admin/tenants/{ns.tenant_id}"))
        return _print_response(client.post(f"/v1/tenants/{ns.tenant_id}/api-keys"))


def cmd_migrate(ns: argparse.Namespace) -> int:
    """`migrate --tenant ID --to PACK [--batch-size N] [--hold]` starts (or, without --hold, releases a held)
    model migration; `migrate --tenant ID --status` prints its progress. Exit 1 on a refusal or error."""
    with admin_client(ns) as client:
        path = f"/v1/admin/tenants/{ns.tenant}/migrate"
        if ns.status:
            return _print_response(client.get(path))
        if not ns.to:
            raise SystemExit("migrate: give --to PACK (a pack name: default, or one of the settings' packs), or --status")
        return _print_response(client.post(path, json={"to": ns.to, "batch_size": ns.batch_size, "hold": ns.hold,
                                                            "pause_s": ns.pause}))


def cmd_audit(ns: argparse.Namespace) -> int:
    """`audit verify [--tenant ID]`: exit 0 when the chain is intact, 1 when it is not (or on an error)."""
    with admin_client(ns) as client:
        params = {"tenant": ns.tenant} if ns.tenant else {}
        response = client.get("/v1/admin/audit/verify", params=params)
        code = _print_response(response)
        return code if code or not response.is_success else (0 if response.json()["intact"] else 1)


def cmd_admin_keys(ns: argparse.Namespace) -> int:
    """`admin-keys create NAME --scopes a,b | list | revoke NAME`; create prints the key's secret, once."""
    with admin_client(ns) as client:
        if ns.action == "create":
            scopes = [scope.strip() for scope in ns.scopes.split(",") if scope.strip()]
            return _print_response(client.post("/v1/admin-keys", json={"name": ns.name, "scopes": scopes}))
        if ns.action == "list":
            return _print_response(client.get("/v1/admin-keys"))
        return _print_response(client.delete(f"/v1/admin-keys/{ns.name}"))


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("SECUREGATE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--admin-token")
    parser.add_argument("--data-dir", help="where to find the generated admin token")
