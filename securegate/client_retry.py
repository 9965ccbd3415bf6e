"""When securegate.client tries a request again: only answers that say nothing was done and to come back
(`overloaded`, 503 with Retry-After), a bounded number of times, waiting at least what the server asked.

On tenacity (a maintained retry library) rather than a hand-written loop: its stop and wait rules compose
and are tested; this module only says which errors and how long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from securegate.client_errors import SecureGateError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retry the error codes in `codes` up to `attempts` calls in all; each wait is the larger of the server's
    Retry-After and an exponential backoff (`initial_s`, doubling), plus up to `initial_s` of jitter, at most
    `max_wait_s`; no wait that would end past `budget_s` after the first call. With the defaults and the
    server's 1 s Retry-After: about 1, 1, 2 s, three retries. `SecureGateClient(retry=None)` never retries."""

    attempts: int = 4
    initial_s: float = 0.5
    max_wait_s: float = 8.0
    budget_s: float = 20.0
    codes: frozenset[str] = frozenset({"overloaded"})

    def call(self, send: Callable[[], T]) -> T:
        """`send()`, again after a retryable `SecureGateError`; the last error is raised as it is."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.retryable),
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_before_delay(self.budget_s),
            wait=self._wait, reraise=True)
        return retrying(send)

    def retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, SecureGateError) and exc.code in self.codes

    def _wait(self, state: tenacity.RetryCallState) -> float:
        asked = state.outcome.exception().retry_after_s or 0.0
        backoff = tenacity.wait_exponential(multiplier=self.initial_s, max=self.max_wait_s)(state)
        jitter = tenacity.wait_random(0, self.initial_s)(state)  # callers told the same Retry-After do not come back together
        return min(self.max_wait_s, max(asked, backoff) + jitter)
