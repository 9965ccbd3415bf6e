"""Operators' calls (an admin key with the scope each needs, deployments/admin_keys.py): tenants and their API
keys, the key hierarchy (root and tenant key rotation, status) and model migrations. A collaborator of the
Ingress, whose handle API and HTTP routes (deployments/routes/admin.py) call it."""

from __future__ import annotations

import asyncio

from ray.serve.handle import DeploymentHandle

from deployments.admin_keys import AdminAuth, admin_principal
from deployments.api_calls import api_errors
from deployments.face_pipeline import FacePipeline, model_id
from deployments.stream_api import StreamApi
from securegate import schemas as s


class AdminApi:
    """`keys`: the KeyService; `cameras`: the cameras a tenant's deletion stops and its key rotation reseals."""

    def __init__(self, tenants: DeploymentHandle, keys: DeploymentHandle, pipeline: FacePipeline, auth: AdminAuth,
                 cameras: StreamApi) -> None:
        self.tenants, self.keys, self.pipeline, self.auth, self.cameras = tenants, keys, pipeline, auth, cameras

    # ---- admin: tenants --------------------------------------------------------------------------------
    @api_errors
    async def create_tenant(self, admin_token: str, name: str, settings: dict | None = None) -> dict:
        await self.auth.check(admin_token, "create_tenant")
        model = await self.pipeline.model_info()
        tenant, api_key = await self.tenants.create_tenant.remote(name, model_id(model), model["dim"], settings,
                                                                  principal=admin_principal())
        return {"tenant_id": tenant["tenant_id"], "api_key": api_key}

    @api_errors
    async def list_tenants(self, admin_token: str) -> list[dict]:
        await self.auth.check(admin_token, "list_tenants")
        return await self.tenants.list_tenants.remote()

    @api_errors
    async def get_tenant(self, admin_token: str, tenant_id: str) -> dict:
        await self.auth.check(admin_token, "get_tenant", tenant_id=tenant_id)
        return await self.tenants.get_tenant.remote(tenant_id)

    @api_errors
    async def tenant_placement(self, admin_token: str, tenant_id: str) -> dict:
        """The tenant, and where each of its index (shard) actors runs now: state, node, process."""
        await self.auth.check(admin_token, "tenant_placement", tenant_id=tenant_id)
        return await self.tenants.tenant_placement.remote(tenant_id)

    @api_errors
    async def update_tenant(self, admin_token: str, tenant_id: str, settings: dict) -> dict:
        await self.auth.check(admin_token, "update_tenant")
        return await self.tenants.update_tenant.remote(tenant_id, settings, principal=admin_principal())

    @api_errors
    async def delete_tenant(self, admin_token: str, tenant_id: str) -> None:
        await self.auth.check(admin_token, "delete_tenant")
        await self.cameras.before_tenant_delete(tenant_id)
        await self.tenants.delete_tenant.remote(tenant_id, principal=admin_principal())

    @api_errors
    async def rotate_api_key(self, admin_token: str, tenant_id: str) -> dict:
        await self.auth.check(admin_token, "rotate_api_key")
        return {"api_key": await self.tenants.rotate_api_key.remote(tenant_id, principal=admin_principal())}

    # ---- admin: keys -------------------------------------------------------------------------------------
    @api_errors
    async def rotate_root_key(self, admin_token: str) -> dict:
        """Re-wraps every tenant key-encryption key under a new org root key; records are not touched."""
        await self.auth.check(admin_token, "rotate_root_key")
        return await self.tenants.rotate_root_key.remote(principal=admin_principal())  # recorded in the org audit

    @api_errors
    async def rotate_tenant_key(self, admin_token: str, tenant_id: str) -> dict:
        await self.auth.check(admin_token, "rotate_tenant_key")
        return await self.cameras.around_key_rotation(
            tenant_id, lambda: self.tenants.rotate_tenant_key.remote(tenant_id, principal=admin_principal()))

    # ---- admin: model migration (tenancy/migration.py) -------------------------------------------------------
    @api_errors
    async def migrate_tenant(self, admin_token: str, tenant_id: str, to: str, batch_size: int = 64,
                             hold: bool = False, pause_s: float = 0.0) -> dict:
        """Re-embed the tenant's kept crops with pack `to` into a shadow index, then switch (unless `hold`)."""
        s.MigrationStart(to=to, batch_size=batch_size, hold=hold, pause_s=pause_s)  # the HTTP bounds, for handle callers too
        await self.auth.check(admin_token, "migrate_tenant")
        return await self.tenants.migrate.remote(tenant_id, to, batch_size, hold, pause_s, principal=admin_principal())

    @api_errors
    async def migration_status(self, admin_token: str, tenant_id: str) -> dict:
        await self.auth.check(admin_token, "migration_status", tenant_id=tenant_id)
        return await self.tenants.migration.remote(tenant_id)

    @api_errors
    async def key_status(self, admin_token: str) -> dict:
        await self.auth.check(admin_token, "key_status")
        status, rotations = await asyncio.gather(self.keys.status.remote(), self.tenants.rotations.remote())
        return {**status, "rotations": rotations}
