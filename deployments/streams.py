"""StreamSupervisor deployment: cameras, their workers, the event log, unknowns and webhooks for every tenant.

Thin: `streams.StreamService` does the work. Keep it at one replica: it is the one writer of each
tenant's events.db and holds the cooldown and live-event state. Workers (one Ray actor per camera) call
back into it with their sightings.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging

from ray import serve
from ray.serve.handle import DeploymentHandle

from securegate import errors
from securegate.settings import Settings
from streams.promotion import UnknownNotFound, UnknownOfAnotherModel
from streams.service import InvalidStream, StreamNotFound, StreamService, TooManyStreams

log = logging.getLogger("ray.serve")


# The service's domain errors → the API's codes (they travel to the Ingress inside Ray's error wrapper).
TRANSLATED = {StreamNotFound: errors.NotFound, InvalidStream: errors.InvalidRequest, TooManyStreams: errors.Conflict,
              UnknownNotFound: errors.NotFound, UnknownOfAnotherModel: errors.ModelMismatch}


def translated(method):
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        self.service.start_background()
        try:
            return await method(self, *args, **kwargs)
        except tuple(TRANSLATED) as exc:
            raise TRANSLATED[type(exc)](str(exc)) from None
        except Exception as exc:
            # An API error raised further down (a worker's InvalidImage) arrives wrapped in Ray's task error, whose
            # text carries the worker's task header: answer with the error itself.
            cause = errors.root_cause(exc)
            if isinstance(cause, errors.ApiError):
                raise cause from None
            raise

    return wrapper


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.1})
class StreamSupervisor:
    def __init__(self, settings: dict, keys: DeploymentHandle, tenants: DeploymentHandle,
                 detector: DeploymentHandle, embedder: DeploymentHandle) -> None:
        cfg = Settings.model_validate(settings)
        context = serve.get_replica_context()
        me = serve.get_deployment_handle(context.deployment, context.app_name)
        self.service = StreamService(cfg.data_dir, keys, tenants, detector, embedder, me, cfg)

    def _started(self) -> StreamService:
        return self.service

    @translated
    async def ready(self) -> bool:
        self._started()
        return True

    # streams
    @translated
    async def create_stream(self, tenant_id: str, name: str, url: str | None, config: dict) -> dict:
        return await self._started().create_stream(tenant_id, name, url, config)

    @translated
    async def list_streams(self, tenant_id: str) -> list[dict]:
        return await self._started().list_streams(tenant_id)

    @translated
    async def get_stream(self, tenant_id: str, stream_id: str) -> dict:
        return await self._started().get_stream(tenant_id, stream_id)

    @translated
    async def update_stream(self, tenant_id: str, stream_id: str, changes: dict) -> dict:
        return await self._started().update_stream(tenant_id, stream_id, changes)

    @translated
    async def delete_stream(self, tenant_id: str, stream_id: str) -> None:
        await self._started().delete_stream(tenant_id, stream_id)

    @translated
    async def push_frame(self, tenant_id: str, stream_id: str, jpeg: bytes, captured_at: float | None) -> dict:
        return await self._started().push_frame(tenant_id, stream_id, jpeg, captured_at)

    @translated
    async def hold_keys(self, tenant_id: str) -> None:
        await self._started().hold_keys(tenant_id)

    @translated
    async def reseal(self, tenant_id: str) -> int:
        return await self._started().reseal(tenant_id)

    @translated
    async def stop_tenant(self, tenant_id: str) -> int:
        return await self._started().stop_tenant(tenant_id)

    # worker callbacks
    @translated
    async def worker_config(self, tenant_id: str, stream_id: str) -> dict | None:
        return await self._started().worker_config(tenant_id, stream_id)

    @translated
    async def record_sighting(self, tenant_id: str, stream_id: str, kind: str, sighting: dict) -> int:
        return await self._started().record_sighting(tenant_id, stream_id, kind, sighting)

    @translated
    async def close_sighting(self, tenant_id: str, stream_id: str, seq: int | None, final: dict) -> None:
        await self._started().close_sighting(tenant_id, stream_id, seq, final)

    # events, attendance, unknowns
    @translated
    async def events(self, tenant_id: str, since: int, limit: int, camera: str | None, person: str | None,
                     kind: str | None) -> list[dict]:
        return await self._started().events(tenant_id, since, limit, camera, person, kind)

    @translated
    async def wait_events(self, tenant_id: str, since: int, timeout_s: float) -> list[dict]:
        return await self._started().wait_events(tenant_id, since, timeout_s)

    @translated
    async def attendance(self, tenant_id: str, day: dt.date) -> list[dict]:
        return await self._started().attendance(tenant_id, day)

    @translated
    async def list_unknowns(self, tenant_id: str) -> list[dict]:
        return await self._started().list_unknowns(tenant_id)

    @translated
    async def take_unknown(self, tenant, unknown_id: str):
        return await self._started().take_unknown(tenant, unknown_id)

    @translated
    async def promote_unknown(self, tenant, unknown_id: str, external_id: str | None, metadata: dict, principal: str) -> dict:
        return await self._started().promote_unknown(tenant, unknown_id, external_id, metadata, principal)

    @translated
    async def person_merged(self, tenant_id: str, merged_person_id: str, person_id: str, external_id: str | None) -> int:
        return await self._started().person_merged(tenant_id, merged_person_id, person_id, external_id)

    @translated
    async def forget_person(self, tenant_id: str, person_id: str) -> int:
        return await self._started().forget_person(tenant_id, person_id)

    @translated
    async def enforce_retention(self, tenant_id: str, retention_days: float, now: float | None = None) -> dict:
        return await self._started().enforce_retention(tenant_id, retention_days, now)

    # webhooks
    @translated
    async def add_webhook(self, tenant_id: str, url: str, kinds: list[str], max_attempts: int | None = None) -> dict:
        return await self._started().add_webhook(tenant_id, url, kinds, max_attempts)

    @translated
    async def list_webhooks(self, tenant_id: str) -> list[dict]:
        return await self._started().list_webhooks(tenant_id)

    @translated
    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> None:
        await self._started().delete_webhook(tenant_id, webhook_id)

    @translated
    async def deliveries(self, tenant_id: str, webhook_id: str, state: str | None, limit: int) -> list[dict]:
        return await self._started().deliveries(tenant_id, webhook_id, state, limit)

    @translated
    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> dict:
        return await self._started().retry_delivery(tenant_id, webhook_id, delivery_id)
