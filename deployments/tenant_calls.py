"""The TenantSupervisor as the Ingress's collaborators call it for an API key: the key's tenant (for calls to other
deployments), a typed answer turned into the API's JSON (labelling the request's metrics and teaching
TenantModels the key's model), and a call made with the key's model, again with the tenant's on a mismatch."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray.serve.handle import DeploymentHandle

from deployments.tenant_models import TenantModels
from securegate import metrics
from tenancy import operations as op
from tenancy.tenant import Tenant, parse_api_key

T = TypeVar("T")


def answered(answer: op.Answer, **more) -> dict:
    """A TenantSupervisor's typed answer as the API's JSON: its fields, without who answered (tenant id, model)."""
    body = dataclasses.asdict(answer)
    del body["tenant_id"], body["model"]
    return {**body, **more}


class TenantCalls:
    def __init__(self, tenants: DeploymentHandle, models: TenantModels) -> None:
        self.tenants, self.models = tenants, models

    async def tenant(self, api_key: str) -> Tenant:
        """The key's tenant, for operations of other deployments (cameras, events): one rate-limit token."""
        tenant = await self.tenants.authenticate.remote(api_key, 1.0)
        metrics.current_tenant.set(tenant.tenant_id)
        metrics.current_principal.set(f"key:{parse_api_key(api_key)[0]}")
        return tenant

    def answered(self, api_key: str, answer: op.Answer, **more) -> dict:
        """The TenantSupervisor's answer as JSON; who answered labels the request's metrics and the key's next embedding."""
        metrics.current_tenant.set(answer.tenant_id)
        self.models.learn(api_key, answer.tenant_id, answer.model)
        return answered(answer, **more)

    async def run(self, api_key: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(model id)` with the key's model, again with the tenant's when it is bound to another."""
        return await self.models.run(api_key, attempt)
