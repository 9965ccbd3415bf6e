"""HTTP for operators (admin token): tenants, their API keys, and the key hierarchy (root and tenant key
rotation, status). Thin wrappers over the handle API on the Ingress (deployments/ingress.py)."""

from fastapi import APIRouter, Header, Response

from deployments.routes.common import ADMIN_ERRORS, bearer
from securegate import schemas as s

router = APIRouter(tags=["admin"])


class AdminRoutes:
    """Calls `self.create_tenant`, `list_tenants`, `get_tenant`, `tenant_placement`, `update_tenant`, `delete_tenant`,
    `rotate_api_key`, `rotate_root_key`, `rotate_tenant_key`, `key_status`, `migrate_tenant`, `migration_status`."""

    @router.post("/v1/tenants", status_code=201, response_model=s.TenantCreated, responses=ADMIN_ERRORS)
    async def http_create_tenant(self, body: s.TenantCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_tenant(bearer(authorization), body.name, body.settings)

    @router.get("/v1/tenants", response_model=list[s.TenantView], responses=ADMIN_ERRORS)
    async def http_list_tenants(self, authorization: str | None = Header(None)) -> list[dict]:
        return await self.list_tenants(bearer(authorization))

    @router.get("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS)
    async def http_get_tenant(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.get_tenant(bearer(authorization), tenant_id)

    @router.patch("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS)
    async def http_update_tenant(self, tenant_id: str, body: s.TenantPatch, authorization: str | None = Header(None)) -> dict:
        return await self.update_tenant(bearer(authorization), tenant_id, body.settings)

    @router.delete("/v1/tenants/{tenant_id}", status_code=204, responses=ADMIN_ERRORS)
    async def http_delete_tenant(self, tenant_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_tenant(bearer(authorization), tenant_id)
        return Response(status_code=204)

    @router.post("/v1/tenants/{tenant_id}/api-keys", status_code=201, response_model=s.ApiKeyCreated, responses=ADMIN_ERRORS)
    async def http_rotate_api_key(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_api_key(bearer(authorization), tenant_id)

    @router.post("/v1/admin/keys/rotate-root", response_model=s.RootKeyRotation, responses=ADMIN_ERRORS)
    async def http_rotate_root_key(self, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_root_key(bearer(authorization))

    @router.post("/v1/tenants/{tenant_id}/keys/rotate", status_code=202, response_model=s.KeyRotation, responses=ADMIN_ERRORS)
    async def http_rotate_tenant_key(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_tenant_key(bearer(authorization), tenant_id)

    @router.post("/v1/admin/tenants/{tenant_id}/migrate", status_code=202, response_model=s.MigrationStatus,
                 responses=ADMIN_ERRORS)
    async def http_migrate_tenant(self, tenant_id: str, body: s.MigrationStart, authorization: str | None = Header(None)) -> dict:
        return await self.migrate_tenant(bearer(authorization), tenant_id, body.to, body.batch_size, body.hold, body.pause_s)

    @router.get("/v1/admin/tenants/{tenant_id}", response_model=s.TenantPlacement, responses=ADMIN_ERRORS)
    async def http_tenant_placement(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.tenant_placement(bearer(authorization), tenant_id)

    @router.get("/v1/admin/tenants/{tenant_id}/migrate", response_model=s.MigrationStatus, responses=ADMIN_ERRORS)
    async def http_migration_status(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.migration_status(bearer(authorization), tenant_id)

    @router.get("/v1/admin/keys/status", response_model=s.KeyStatus, responses=ADMIN_ERRORS)
    async def http_key_status(self, authorization: str | None = Header(None)) -> dict:
        return await self.key_status(bearer(authorization))
