"""HTTP for the audit logs: a tenant's own (tenant key) and the org's (admin). Thin wrappers over the
replica's AuditApi (deployments/audit_api.py)."""

from fastapi import APIRouter, Header, Query

from deployments.audit_api import AuditApi
from deployments.routes.common import ADMIN_ERRORS, STATELESS_ERRORS, TENANT_ERRORS, bearer, collaborator
from securegate import schemas as s

router = APIRouter(tags=["audit"])


AuditLogs = collaborator("audit_logs", AuditApi)


@router.get("/v1/audit", response_model=s.AuditPage, responses=TENANT_ERRORS)
async def http_audit(audit_logs: AuditLogs, since: int = Query(0, ge=0, le=s.SEQ_MAX, description="sequence number of the last event seen"),
                     limit: int = Query(100, ge=1, le=1000),
                     authorization: str | None = Header(None)) -> dict:
    return await audit_logs.audit(bearer(authorization), since, limit)


@router.get("/v1/audit/verify", response_model=s.AuditVerification, responses=TENANT_ERRORS)
async def http_verify_audit(audit_logs: AuditLogs, authorization: str | None = Header(None)) -> dict:
    return await audit_logs.verify_audit(bearer(authorization))


@router.get("/v1/admin/audit", response_model=s.OrgAuditPage, responses=ADMIN_ERRORS)
async def http_org_audit(audit_logs: AuditLogs, since: int = Query(0, ge=0, le=s.SEQ_MAX, description="sequence number of the last event seen"),
                         limit: int = Query(100, ge=1, le=1000),
                         authorization: str | None = Header(None)) -> dict:
    return await audit_logs.org_audit(bearer(authorization), since, limit)


@router.get("/v1/admin/audit/verify", response_model=s.AuditVerification, responses=ADMIN_ERRORS)
async def http_admin_verify_audit(audit_logs: AuditLogs, tenant: str | None = Query(None, max_length=64, description="a tenant id; none: the org audit"),
                                  authorization: str | None = Header(None)) -> dict:
    return await audit_logs.admin_verify_audit(bearer(authorization), tenant)


@router.get("/v1/admin/erasure-receipts/{tenant_id}", response_model=s.ErasureReceipt, responses=ADMIN_ERRORS)
async def http_erasure_receipt(audit_logs: AuditLogs, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await audit_logs.erasure_receipt(bearer(authorization), tenant_id)


@router.get("/v1/erasure-receipts/keys", response_model=s.SigningKeys, responses=STATELESS_ERRORS)
async def http_receipt_keys(audit_logs: AuditLogs) -> dict:
    """The public keys that check erasure receipts: published, no credential needed."""
    return await audit_logs.receipt_keys()
