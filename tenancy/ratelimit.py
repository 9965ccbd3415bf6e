"""Per-tenant token buckets: a steady rate with room for bursts.

Buckets live in the TenantSupervisor replica that authenticates the request; with several TenantSupervisor replicas
each enforces its share (Serve spreads requests across replicas), so the effective limit is approximate
by design: cheap, and no shared state on the hot path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from securegate import errors


class RateLimited(Exception):
    api_error = errors.RateLimited

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after_s:.2f}s")
        self.retry_after_s = retry_after_s

    def __reduce__(self):  # crosses Ray processes with its number, not its message
        return (RateLimited, (self.retry_after_s,))

    def api_details(self) -> dict:
        return {"retry_after_s": round(self.retry_after_s, 3)}


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, cost: float = 1.0, now: float | None = None) -> None:
        """Spend `cost` tokens or raise RateLimited saying when enough will have accrued."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return
        raise RateLimited((cost - self.tokens) / self.rate_per_s)


class RateLimiter:
    """One bucket per tenant, re-created when the tenant's limits change."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, tenant_id: str, rate_per_s: float | None, burst: int, cost: float = 1.0) -> None:
        if rate_per_s is None:
            return
        bucket = self._buckets.get(tenant_id)
        if bucket is None or bucket.rate_per_s != rate_per_s or bucket.burst != burst:
            bucket = self._buckets[tenant_id] = TokenBucket(rate_per_s, float(burst))
        bucket.take(cost)
