"""Admission by a latency budget: an image is refused (503 `overloaded`, Retry-After) when its expected time at the
Detector (waiting, detection, embedding) would pass the operator's budget, not when a fixed number of images is
queued (a fixed count is right for one image size on one machine only).

The Ingress keeps this for the images it sends: its images in flight, and the recent time per image of the
detection stage as the Ingress sees it complete (an EWMA of the gaps between completions while images were in
flight: the whole stage's time per image, every Detector replica and the camera frames sharing it included). By
Little's law an image sent now is answered after about (in flight + 1) of those. It is a mean; the budget is a
p99 target, so refusals start at HEADROOM of it (benchmarks/pipeline.py measures p99 at concurrency 16). An
image that finds nothing in flight is never refused: waiting elsewhere cannot make it faster.

Why in the Ingress and not in the Detector replicas: Serve's queue in front of the Detector (at the caller) hands
the next image to whichever replica frees a slot first; a queue inside each replica, where a replica could see
it, commits an image to one replica on arrival and measured 0.7x the throughput at concurrency 4 with two
replicas (docs/performance.md). A refusal here also costs no trip to the Detector.
"""

from __future__ import annotations

import time

from securegate import errors

# Expected time (a mean) at which refusals start, as a share of the p99 budget: latencies of admitted images
# spread around the expectation (image sizes differ, camera frames share the Detector).
HEADROOM = 0.7
SMOOTHING = 0.2  # weight of the newest gap in the moving average


class LatencyBudget:
    """`admit()` before an image goes to the Detector, `done()` when its answer (or error) is back."""

    def __init__(self, budget_s: float, clock=time.monotonic) -> None:
        self.budget_s, self.clock = budget_s, clock
        self.in_flight = 0
        self.per_image_s: float | None = None  # EWMA of the gaps between completions while busy
        self._since: float | None = None  # start of the current gap: the last completion, or the end of idleness

    def expected_s(self) -> float:
        """Expected seconds until an image admitted now is answered."""
        return (self.in_flight + 1) * (self.per_image_s or 0.0)

    def admit(self) -> None:
        """Count the image in, or refuse it with the time until the images in flight would fit the budget."""
        limit = self.budget_s * HEADROOM
        expected = self.expected_s()
        if self.in_flight and self.per_image_s is not None and expected > limit:
            raise errors.Overloaded(f"the service is at capacity (expected {expected:.2f}s, budget {self.budget_s:.2f}s); "
                                    "retry shortly", retry_after_s=round(max(0.1, expected - limit), 3))
        if self.in_flight == 0:
            self._since = self.clock()
        self.in_flight += 1

    def done(self) -> None:
        now = self.clock()
        gap = now - self._since
        self.per_image_s = gap if self.per_image_s is None else (1 - SMOOTHING) * self.per_image_s + SMOOTHING * gap
        self._since = now
        self.in_flight -= 1

    def state(self) -> dict:
        return {"budget_s": self.budget_s, "in_flight": self.in_flight, "expected_s": round(self.expected_s(), 4),
                "per_image_s": None if self.per_image_s is None else round(self.per_image_s, 4)}
