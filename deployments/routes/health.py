"""HTTP for probes: liveness (the replica answers) and readiness (models loaded, key service reachable, the data
disk writable)."""

import asyncio
import logging

from fastapi import APIRouter

from deployments.readiness import Readiness
from deployments.routes.common import collaborator, error_response
from securegate import errors
from securegate import schemas as s

log = logging.getLogger("ray.serve")

router = APIRouter(tags=["health"])


Health = collaborator("health", Readiness)


@router.get("/v1/healthz", response_model=s.Health)
async def http_healthz() -> dict:
    return {"status": "ok"}


@router.get("/v1/readyz", response_model=s.Readiness, responses={503: {"model": s.ErrorResponse}})
async def http_readyz(health: Health):
    try:
        return await asyncio.wait_for(health.ready(), timeout=5.0)
    except errors.NotReady as exc:  # it says why (the key provider, a full data disk)
        log.warning("not ready: %s", exc.message)
        return error_response(exc)
    except Exception as exc:
        log.warning("not ready: %r", exc)
        return error_response(errors.NotReady("models or the key service are not ready"))
