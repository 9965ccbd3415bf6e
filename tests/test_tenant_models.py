"""The Ingress's hint of which model a key's tenant is bound to (deployments/tenant_models.py): it embeds with the
hinted model, and when the TenantSupervisor refuses the vectors with the tenant's model (as tenancy/gallery.py does
after a model migration's switch) it embeds once more with that model and remembers it. `attempt` here records
the model it is asked for and refuses like the TenantSupervisor; no Ray."""

import asyncio

import pytest

from deployments.tenant_models import TenantModels
from securegate import errors

KEY = "sg_k1_secret"


def models(served=("old/128", "new/96")) -> TenantModels:
    async def packs():
        return "old/128", set(served)

    return TenantModels(packs)


def supervisor_bound_to(bound: str, asked: list[str]):
    async def attempt(model: str) -> str:
        asked.append(model)
        if model != bound:
            raise errors.ModelMismatch(f"tenant is bound to {bound}", tenant_model=bound)
        return f"answered with {model}"

    return attempt


def test_a_new_key_is_embedded_with_the_default_model_then_with_its_tenants():
    hints, asked = models(), []
    assert asyncio.run(hints.run(KEY, supervisor_bound_to("new/96", asked))) == "answered with new/96"
    assert asked == ["old/128", "new/96"]
    asked.clear()
    asyncio.run(hints.run(KEY, supervisor_bound_to("new/96", asked)))
    assert asked == ["new/96"]  # remembered: one embedding from now on


def test_a_tenant_bound_to_a_model_not_served_is_a_model_mismatch():
    hints, asked = models(served=("old/128",)), []
    with pytest.raises(errors.ModelMismatch, match="bound to model new/96; this deployment serves old/128"):
        asyncio.run(hints.run(KEY, supervisor_bound_to("new/96", asked)))
    assert asked == ["old/128"]


def test_other_refusals_pass_through_untouched():
    hints = models()

    async def attempt(model: str):
        raise errors.NotFound("person p1 not found")

    with pytest.raises(errors.NotFound):
        asyncio.run(hints.run(KEY, attempt))
