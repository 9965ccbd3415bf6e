"""HTTP for a tenant's audit log. A thin wrapper over the handle API on the Ingress (deployments/ingress.py)."""

from fastapi import APIRouter, Header, Query

from deployments.routes.common import TENANT_ERRORS, bearer
from securegate import schemas as s

router = APIRouter(tags=["audit"])


class AuditRoutes:
    """Calls `self.audit`."""

    @router.get("/v1/audit", response_model=s.AuditPage, responses=TENANT_ERRORS)
    async def http_audit(self, since: int = Query(0, ge=0, le=s.SEQ_MAX, description="sequence number of the last event seen"),
                         limit: int = Query(100, ge=1, le=1000),
                         authorization: str | None = Header(None)) -> dict:
        return await self.audit(bearer(authorization), since, limit)
