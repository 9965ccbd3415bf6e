"""Admin authorisation, a collaborator of the Ingress: the one table of which scope each admin endpoint needs,
the check every admin method makes first (`AdminAuth`), and the admin keys' own handle API (`AdminKeyApi`:
create, list, revoke), which the HTTP routes in deployments/routes/admin_keys.py call.
"""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from securegate import errors, metrics
from tenancy.admin_keys import AdminKey

# Every admin method of the handle API (its name) and the one scope it needs. Tests walk the OpenAPI
# document's admin routes against this table, so an endpoint without an entry cannot ship unnoticed.
ADMIN_SCOPES: dict[str, str] = {
    "list_tenants": "tenants:read",
    "get_tenant": "tenants:read",
    "tenant_placement": "tenants:read",
    "create_tenant": "tenants:write",
    "update_tenant": "tenants:write",
    "delete_tenant": "tenants:write",
    "rotate_api_key": "tenants:write",  # issues a tenant's credential, as creating the tenant does
    "key_status": "keys:read",
    "rotate_root_key": "keys:rotate",
    "rotate_tenant_key": "keys:rotate",
    "migrate_tenant": "models:migrate",
    "migration_status": "tenants:read",
    "org_audit": "audit:read",
    "admin_verify_audit": "audit:read",
    "erasure_receipt": "audit:read",
    "list_admin_keys": "admin-keys:read",
    "create_admin_key": "admin-keys:write",
    "revoke_admin_key": "admin-keys:write",
}


# Admin endpoints that only read: each call is recorded in the org audit too (`admin.read`: who looked at what),
# before it is served.
ADMIN_READS = {"list_tenants", "get_tenant", "tenant_placement", "key_status", "migration_status", "org_audit",
               "admin_verify_audit", "erasure_receipt", "list_admin_keys"}


def admin_principal() -> str:
    """Who makes an admin call, as the org audit records it: the `admin:<key name>` set when the call was
    authorised, else the one admin token's `admin`."""
    principal = metrics.current_principal.get()
    return principal if principal.startswith("admin") else "admin"


class AdminAuth:
    def __init__(self, tenants: DeploymentHandle) -> None:
        self.tenants = tenants

    async def check(self, admin_token: str, endpoint: str, **read: str | None) -> AdminKey:
        """The caller's admin key, if live and holding the endpoint's scope (else 403 forbidden); admin
        actions from here on are recorded under its name (`admin:<name>`), and a read is recorded now (`read`:
        what it reads, e.g. tenant_id)."""
        key = await self.tenants.check_admin.remote(admin_token, ADMIN_SCOPES[endpoint])
        metrics.current_principal.set(key.principal)
        if endpoint in ADMIN_READS:
            details = {"endpoint": endpoint, **{k: v for k, v in read.items() if v is not None}}
            await self.tenants.org_record.remote(key.principal, "admin.read", details)
        return key


class AdminKeyApi:
    def __init__(self, tenants: DeploymentHandle, auth: AdminAuth) -> None:
        self.tenants, self.auth = tenants, auth

    @api_errors
    async def create_admin_key(self, admin_token: str, name: str, scopes: list[str]) -> dict:
        """A named admin key; its secret is in this answer only. It may hold only scopes the caller holds."""
        caller = await self.auth.check(admin_token, "create_admin_key")
        beyond = sorted(set(scopes) - set(caller.scopes))
        if beyond:
            raise errors.Forbidden(f"admin key {caller.name!r} cannot grant scopes it lacks: {beyond}")
        key, token = await self.tenants.create_admin_key.remote(name, scopes, caller.principal)
        return {**key, "admin_key": token}

    @api_errors
    async def list_admin_keys(self, admin_token: str) -> dict:
        """Every admin key by name and scopes (never a secret), revoked ones included."""
        await self.auth.check(admin_token, "list_admin_keys")
        return {"admin_keys": await self.tenants.list_admin_keys.remote()}

    @api_errors
    async def revoke_admin_key(self, admin_token: str, name: str) -> dict:
        """Refused from the next call on, on every replica (no replica caches admin keys)."""
        caller = await self.auth.check(admin_token, "revoke_admin_key")
        return await self.tenants.revoke_admin_key.remote(name, caller.principal)
