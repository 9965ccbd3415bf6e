"""The handle API's one wrapper (Ingress and its StreamApi mixin): Python callers get the same typed ApiError,
with its code, that HTTP clients get as JSON, and every call is counted by endpoint, tenant and outcome."""

from __future__ import annotations

import functools
import time

from securegate import errors, metrics


def api_errors(method):
    """Python callers get the same typed ApiError (with its code) that HTTP clients get as JSON; every
    call is counted by endpoint, tenant and outcome."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        outcome = "ok"
        token = metrics.current_tenant.set("-")
        try:
            return await method(*args, **kwargs)
        except errors.ApiError as exc:
            outcome = exc.code
            raise
        except Exception as exc:
            mapped = errors.to_api_error(exc)
            outcome = mapped.code
            raise mapped from None
        finally:
            metrics.requests_total().inc(tags={"endpoint": method.__name__, "tenant": metrics.current_tenant.get(), "outcome": outcome})
            metrics.request_seconds().observe(time.perf_counter() - started, tags={"endpoint": method.__name__})
            metrics.current_tenant.reset(token)

    return wrapper
