"""The audit logs: a tenant's own (its API key) and the org's (admin), and the erasure receipts of deleted tenants:
a collaborator of the Ingress, whose handle API and HTTP routes (deployments/routes/audit.py) call it."""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle

from deployments.admin_keys import AdminAuth
from deployments.api_calls import api_errors
from deployments.tenant_calls import TenantCalls
from securegate import errors
from securegate import schemas as s
from tenancy import operations as op


class AuditApi:
    def __init__(self, tenants: DeploymentHandle, calls: TenantCalls, auth: AdminAuth) -> None:
        self.tenants, self.calls, self.auth = tenants, calls, auth

    @api_errors
    async def audit(self, api_key: str, since: int = 0, limit: int = 100) -> dict:
        """The tenant's audit events after sequence number `since`, oldest first; page with `next_since`."""
        if not 0 <= since <= s.SEQ_MAX:
            raise errors.InvalidRequest(f"since must be between 0 and {s.SEQ_MAX}")
        page = await self.tenants.audit_events.remote(op.AuditEvents(op.ApiKeyCaller(api_key), since, limit))
        return self.calls.answered(api_key, page, next_since=page.events[-1]["seq"] if page.events else since)

    @api_errors
    async def verify_audit(self, api_key: str) -> dict:
        """The caller's tenant audit chain checked against itself and its MACed checkpoints."""
        verified = await self.tenants.verify_tenant_audit.remote(op.VerifyAudit(op.ApiKeyCaller(api_key)))
        self.calls.answered(api_key, verified)
        return verified.result

    @api_errors
    async def admin_verify_audit(self, admin_token: str, tenant_id: str | None = None) -> dict:
        """A tenant's audit chain, or (None) the org audit's, checked."""
        await self.auth.check(admin_token, "admin_verify_audit", tenant_id=tenant_id)
        return await self.tenants.verify_audit.remote(tenant_id)

    @api_errors
    async def org_audit(self, admin_token: str, since: int = 0, limit: int = 100) -> dict:
        """The org audit (admin actions, key rotations, erasure receipts) after `since`, oldest first."""
        if not 0 <= since <= s.SEQ_MAX:
            raise errors.InvalidRequest(f"since must be between 0 and {s.SEQ_MAX}")
        await self.auth.check(admin_token, "org_audit")
        events = await self.tenants.org_audit_events.remote(since, limit)
        return {"events": events, "next_since": events[-1]["seq"] if events else since}

    @api_errors
    async def erasure_receipt(self, admin_token: str, tenant_id: str) -> dict:
        """A deleted tenant's erasure receipt, signed with the key provider's public-key signature."""
        await self.auth.check(admin_token, "erasure_receipt", tenant_id=tenant_id)
        return await self.tenants.erasure_receipt.remote(tenant_id)

    @api_errors
    async def receipt_keys(self) -> dict:
        """The public keys that check erasure receipts (no credential: they are published)."""
        return {"keys": await self.tenants.signing_keys.remote()}
