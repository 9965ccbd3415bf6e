"""HTTP for operators (admin token): tenants, their API keys, and the key hierarchy (root and tenant key
rotation, status). Thin wrappers over the replica's AdminApi (deployments/admin_api.py)."""

from fastapi import APIRouter, Header, Response

from deployments.admin_api import AdminApi
from deployments.routes.common import ADMIN_ERRORS, bearer, collaborator
from securegate import schemas as s

router = APIRouter(tags=["admin"])


Admin = collaborator("admin", AdminApi)


@router.post("/v1/tenants", status_code=201, response_model=s.TenantCreated, responses=ADMIN_ERRORS)
async def http_create_tenant(admin: Admin, body: s.TenantCreate, authorization: str | None = Header(None)) -> dict:
    return await admin.create_tenant(bearer(authorization), body.name, body.settings)


@router.get("/v1/tenants", response_model=list[s.TenantView], responses=ADMIN_ERRORS)
async def http_list_tenants(admin: Admin, authorization: str | None = Header(None)) -> list[dict]:
    return await admin.list_tenants(bearer(authorization))


@router.get("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS)
async def http_get_tenant(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await admin.get_tenant(bearer(authorization), tenant_id)


@router.patch("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS)
async def http_update_tenant(admin: Admin, tenant_id: str, body: s.TenantPatch, authorization: str | None = Header(None)) -> dict:
    return await admin.update_tenant(bearer(authorization), tenant_id, body.settings)


@router.delete("/v1/tenants/{tenant_id}", status_code=204, responses=ADMIN_ERRORS)
async def http_delete_tenant(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> Response:
    await admin.delete_tenant(bearer(authorization), tenant_id)
    return Response(status_code=204)


@router.post("/v1/tenants/{tenant_id}/api-keys", status_code=201, response_model=s.ApiKeyCreated, responses=ADMIN_ERRORS)
async def http_rotate_api_key(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await admin.rotate_api_key(bearer(authorization), tenant_id)


@router.post("/v1/admin/keys/rotate-root", response_model=s.RootKeyRotation, responses=ADMIN_ERRORS)
async def http_rotate_root_key(admin: Admin, authorization: str | None = Header(None)) -> dict:
    return await admin.rotate_root_key(bearer(authorization))


@router.post("/v1/tenants/{tenant_id}/keys/rotate", status_code=202, response_model=s.KeyRotation, responses=ADMIN_ERRORS)
async def http_rotate_tenant_key(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await admin.rotate_tenant_key(bearer(authorization), tenant_id)


@router.post("/v1/admin/tenants/{tenant_id}/migrate", status_code=202, response_model=s.MigrationStatus,
             responses=ADMIN_ERRORS)
async def http_migrate_tenant(admin: Admin, tenant_id: str, body: s.MigrationStart, authorization: str | None = Header(None)) -> dict:
    return await admin.migrate_tenant(bearer(authorization), tenant_id, body.to, body.batch_size, body.hold, body.pause_s)


@router.get("/v1/admin/tenants/{tenant_id}", response_model=s.TenantPlacement, responses=ADMIN_ERRORS)
async def http_tenant_placement(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await admin.tenant_placement(bearer(authorization), tenant_id)


@router.get("/v1/admin/tenants/{tenant_id}/migrate", response_model=s.MigrationStatus, responses=ADMIN_ERRORS)
async def http_migration_status(admin: Admin, tenant_id: str, authorization: str | None = Header(None)) -> dict:
    return await admin.migration_status(bearer(authorization), tenant_id)


@router.get("/v1/admin/keys/status", response_model=s.KeyStatus, responses=ADMIN_ERRORS)
async def http_key_status(admin: Admin, authorization: str | None = Header(None)) -> dict:
    return await admin.key_status(bearer(authorization))
