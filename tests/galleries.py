"""A TenantService's gallery operations as the TenantSupervisor runs them (tenancy/gallery.py), for tests that drive a
TenantService of their own with vectors they made (no Embedder: every search names its threshold)."""

from __future__ import annotations

import numpy as np

from tenancy import operations as op


def service_gallery(service):
    from tenancy.gallery import TenantGallery
    from tenancy.ratelimit import RateLimiter

    async def no_default_threshold(model: str) -> float:
        raise AssertionError(f"a test search names its threshold (model {model})")

    return TenantGallery(service, RateLimiter(), no_default_threshold)


async def add_vector(gallery, tenant, person_id: str, vector: np.ndarray, principal: str = "internal") -> str:
    """One face from a vector (as a promoted camera sample is stored): its face id."""
    caller = op.InternalCaller(tenant.tenant_id, principal)
    added = await gallery.add_samples(op.AddSamples(caller, person_id, np.asarray(vector, np.float32)[None], tenant.model))
    return added.face_ids[0]
