"""Admission by a latency budget: an image is refused (503 `overloaded`, Retry-After) when the time it would
spend in the Detector, waiting for a slot and then served, is expected to exceed the operator's budget, not when
a fixed number of images is queued (a fixed count is right for one image size and one machine only).

The expectation comes from the queue as it stands and the replica's recent service times (EWMA): with
`servers` images detected at once and `ahead` images running or waiting, a newcomer is served after about
(ahead + 1 - servers) / servers service times, then takes one service time, then its embedding. It is a mean;
the budget is a p99 target, so refusals start at HEADROOM of it (benchmarks/pipeline.py measures p99 against
the budget at concurrency 16).
"""

from __future__ import annotations

from securegate import errors

# Expected time (a mean) at which refusals start, as a share of the p99 budget: latencies of admitted images
# spread around the expectation (image sizes differ, camera frames share the CPU).
HEADROOM = 0.75
SMOOTHING = 0.2  # weight of the newest service time in the moving averages


class LatencyBudget:
    """One Detector replica's admission: `admit()` before an image queues for a slot, `served(s)` with each
    image's slot time, `embedded(s)` with each embedding's time."""

    def __init__(self, budget_s: float, servers: int) -> None:
        self.budget_s, self.servers = budget_s, servers
        self.service_s: float | None = None  # decode + detect, per image
        self.embed_s = 0.0  # the Embedder's answer, per image embedded
        self.ahead = 0  # images admitted and not yet out of their slot

    def expected_s(self) -> float:
        """Expected seconds in the Detector for an image admitted now."""
        service = self.service_s or 0.0
        waiting = max(0, self.ahead + 1 - self.servers)
        return waiting / self.servers * service + service + self.embed_s

    def admit(self) -> None:
        """Count the image in, or refuse it with the time until the queue would hold it within the budget. An
        image that would not wait (a slot is free) is never refused: waiting elsewhere cannot make it faster."""
        limit = self.budget_s * HEADROOM
        expected = self.expected_s()
        if self.service_s is not None and self.ahead >= self.servers and expected > limit:
            raise errors.Overloaded(f"the service is at capacity (expected wait {expected:.2f}s, budget "
                                    f"{self.budget_s:.2f}s); retry shortly", retry_after_s=round(max(0.1, expected - limit), 3))
        self.ahead += 1

    def left(self) -> None:
        """The image left its slot (served or failed)."""
        self.ahead -= 1

    def served(self, seconds: float) -> None:
        self.service_s = seconds if self.service_s is None else (1 - SMOOTHING) * self.service_s + SMOOTHING * seconds

    def embedded(self, seconds: float) -> None:
        self.embed_s = (1 - SMOOTHING) * self.embed_s + SMOOTHING * seconds if self.embed_s else seconds

    def state(self) -> dict:
        return {"budget_s": self.budget_s, "ahead": self.ahead, "servers": self.servers,
                "service_s": None if self.service_s is None else round(self.service_s, 4),
                "embed_s": round(self.embed_s, 4), "expected_s": round(self.expected_s(), 4)}
