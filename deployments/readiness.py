"""Readiness, a collaborator of the Ingress (deployments/routes/health.py answers /v1/readyz with it): the models
loaded, the key service reaching its provider, the data disk writable."""

from __future__ import annotations

import asyncio

from ray.serve.handle import DeploymentHandle

from deployments.api_calls import api_errors
from deployments.face_pipeline import FacePipeline
from securegate import errors


class Readiness:
    def __init__(self, pipeline: FacePipeline, keys: DeploymentHandle, tenants: DeploymentHandle) -> None:
        self.pipeline, self.keys, self.tenants = pipeline, keys, tenants

    @api_errors
    async def ready(self) -> dict:
        (detector, embedder), keys, storage = await asyncio.gather(
            self.pipeline.infos(), self.keys.ready.remote(), self.tenants.storage.remote())
        if not keys:
            raise errors.NotReady("the key service cannot reach its provider")
        if not storage["writable"]:
            raise errors.NotReady(f"{errors.DISK_FULL_MESSAGE} ({storage['free_bytes']} bytes free)",
                                  cause=errors.InsufficientStorage.code, free_bytes=storage["free_bytes"])
        return {"ready": True, "detector": detector, "embedder": embedder, "keys": keys, "storage": storage}
