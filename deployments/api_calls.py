"""The handle API's plumbing: its one wrapper (`api_errors`, on every collaborator's handle method: Python callers get
the same typed ApiError, with its code, that HTTP clients get as JSON, and every call is counted by endpoint, tenant
and outcome), and `ServedBy`, which makes a collaborator's method a method of the Ingress."""

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


class ServedBy:
    """A handle-API method of the Ingress that is the same-named method of the collaborator in its attribute
    `collaborator`: Serve finds it by name on the replica (`handle.search.remote(...)`), and callers get that
    method itself, its signature and wrapper included."""

    def __init__(self, collaborator: str) -> None:
        self.collaborator = collaborator
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ingress, owner: type | None = None):
        if ingress is None:
            return self
        return getattr(getattr(ingress, self.collaborator), self.name)
