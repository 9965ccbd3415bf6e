"""`securegate eval --apply`: write a measured threshold into a tenant's settings through the admin API."""

from __future__ import annotations

import math

from securegate.client import SecureGateClient, SecureGateConnectionError, SecureGateError


class ApplyError(RuntimeError):
    """The threshold was not written; the message says why."""


def apply_threshold(url: str, tenant_id: str, threshold: float, admin_token: str, *, model: dict | None = None,
                    timeout: float = 30.0, transport=None) -> dict:
    """Write `threshold` as the tenant's default through the admin API; returns the updated tenant.

    When `model` (pack.describe()) is given, the tenant is read first and the write refused if its vectors
    belong to another recognizer: a threshold measured on one model means nothing for another (e.g. 0.37
    for mobilefacenet vs 0.6 for glintr100)."""
    if not admin_token:
        raise ApplyError("no admin token: pass --admin-token or set SECUREGATE_ADMIN_TOKEN")
    if not (-1.0 <= threshold <= 1.0) or not math.isfinite(threshold):
        raise ApplyError(f"threshold {threshold} is outside the cosine range [-1, 1]")
    with SecureGateClient(url, admin_token=admin_token, timeout=timeout, transport=transport) as client:
        try:
            if model is not None:
                bound = client.get_tenant(tenant_id).model
                if (bound.name, bound.dim) != (model["name"], model["dim"]):
                    raise ApplyError(
                        f"tenant {tenant_id} is bound to {bound.name}/{bound.dim} but this evaluation "
                        f"used {model['name']}/{model['dim']}: evaluate with that tenant's model pack (--models)")
            tenant = client.update_tenant(tenant_id, {"default_threshold": float(threshold)})
        except SecureGateConnectionError:
            raise
        except SecureGateError as exc:
            raise ApplyError(f"HTTP {exc.status} from {url}: {exc.code}: {exc.message[:300]}") from exc
    return tenant.model_dump()
