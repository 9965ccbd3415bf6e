"""A tenant's streams (cameras): their configuration, persisted with the URL sealed, and what their workers need.

Each enabled stream runs in its `StreamWorker` actor (streams/worker_pool.py); a pushed stream (no URL) gets its
frames through `push_frame`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.errors import InvalidStream, StreamNotFound, TooManyStreams
from streams.event_log import Cooldowns
from streams.files import StreamFiles
from streams.sources import file_path, redact_url, source_kind
from streams.stream_model import StreamModel
from streams.worker_pool import WorkerPool


class StreamRegistry:
    """Needs the tenants' files, the worker pool, the camera model (the threshold and model check a worker is
    configured with), the TenantSupervisor handle, the cooldowns (a deleted stream's go) and the settings."""

    def __init__(self, files: StreamFiles, workers: WorkerPool, model: StreamModel, tenants, cooldowns: Cooldowns,
                 settings) -> None:
        self.files, self.workers, self.model, self.tenants, self.cooldowns = files, workers, model, tenants, cooldowns
        self.settings, self.cfg = settings, settings.streams
        self._streams: dict[str, dict[str, dict]] = {}  # tenant -> stream id -> stream (decrypted URL), for sightings

    def _check_config(self, url: str | None, fps: float) -> None:
        if url is not None:
            try:
                kind = source_kind(url)
            except ValueError as exc:
                raise InvalidStream(str(exc)) from None
            if kind == "file":
                data_dir = self.files.data_dir
                path = file_path(url).resolve()
                roots = [(data_dir / "media").resolve(), *(Path(d).resolve() for d in self.cfg.media_dirs)]
                if not any(path.is_relative_to(root) for root in roots):
                    raise InvalidStream("file sources are read from the server's media directories only "
                                        f"({data_dir / 'media'} and settings streams.media_dirs)")
                if not path.is_file():
                    raise InvalidStream(f"no such video file on the server: {redact_url(url)}")
        if not 0 < fps <= 30:
            raise InvalidStream("fps must be in (0, 30]")

    async def create_stream(self, tenant_id: str, name: str, url: str | None, config: dict) -> dict:
        store = self.files.store(tenant_id)
        ciphers = await self.files.event_keys(tenant_id)
        if len(store.streams(ciphers)) >= self.cfg.max_streams_per_tenant:
            raise TooManyStreams(f"a tenant has at most {self.cfg.max_streams_per_tenant} streams")
        self._check_config(url, config["fps"])
        stream_id = store.add_stream(ciphers.current, name, url or "", config)
        self._streams.pop(tenant_id, None)
        if config.get("enabled", True):
            await self.workers.ensure(tenant_id, stream_id)
        return await self.get_stream(tenant_id, stream_id)

    async def stream(self, tenant_id: str, stream_id: str) -> dict:
        """The stream as stored, its URL decrypted (cached per tenant until a stream of the tenant changes)."""
        if tenant_id not in self._streams:
            ciphers = await self.files.event_keys(tenant_id)
            self._streams[tenant_id] = {s["stream_id"]: s for s in self.files.store(tenant_id).streams(ciphers)}
        try:
            return self._streams[tenant_id][stream_id]
        except KeyError:
            raise StreamNotFound(f"stream {stream_id} not found") from None

    def _view(self, stream: dict, status: dict | None) -> dict:
        url = stream["url"] or None
        return {"stream_id": stream["stream_id"], "name": stream["name"],
                "url": redact_url(url) if url else None, "source": source_kind(url) if url else "push",
                **{k: stream["config"].get(k) for k in ("fps", "cooldown_s", "loop", "enabled")},
                "created_at": stream["created_at"], "status": status or {"state": "disabled"}}

    async def get_stream(self, tenant_id: str, stream_id: str) -> dict:
        stream = await self.stream(tenant_id, stream_id)
        return self._view(stream, await self.workers.status(tenant_id, stream))

    async def list_streams(self, tenant_id: str) -> list[dict]:
        ciphers = await self.files.event_keys(tenant_id)
        streams = self.files.store(tenant_id).streams(ciphers)
        statuses = await asyncio.gather(*(self.workers.status(tenant_id, s) for s in streams))
        return [self._view(s, st) for s, st in zip(streams, statuses)]

    async def update_stream(self, tenant_id: str, stream_id: str, changes: dict) -> dict:
        stream = await self.stream(tenant_id, stream_id)
        url = changes.pop("url", None) or stream["url"]
        name = changes.pop("name", None) or stream["name"]
        config = {**stream["config"], **{k: v for k, v in changes.items() if v is not None}}
        self._check_config(url or None, config["fps"])
        ciphers = await self.files.event_keys(tenant_id)
        self.files.store(tenant_id).put_stream(ciphers.current, stream_id, name, url, config, stream["created_at"])
        self._streams.pop(tenant_id, None)
        await self.workers.stop(tenant_id, stream_id)
        if config.get("enabled", True):
            await self.workers.ensure(tenant_id, stream_id)
        return await self.get_stream(tenant_id, stream_id)

    async def delete_stream(self, tenant_id: str, stream_id: str) -> None:
        await self.stream(tenant_id, stream_id)
        await self.workers.stop(tenant_id, stream_id)
        self.files.store(tenant_id).delete_stream(stream_id)
        self._streams.pop(tenant_id, None)
        self.cooldowns.drop(tenant_id, stream_id=stream_id)

    async def push_frame(self, tenant_id: str, stream_id: str, jpeg: bytes, captured_at: float | None) -> dict:
        stream = await self.stream(tenant_id, stream_id)
        if stream["url"]:
            raise InvalidStream("this stream pulls from its URL; frames can be pushed to streams created without one")
        if not stream["config"].get("enabled", True):
            raise InvalidStream("the stream is disabled")
        worker = await self.workers.ensure(tenant_id, stream_id)
        return await worker.push_frame.remote(jpeg, captured_at, self.settings.limits.max_image_pixels)

    async def worker_config(self, tenant_id: str, stream_id: str) -> dict | None:
        """What a (re)started worker needs: the decrypted URL, the tenant, threshold and quality gates."""
        try:
            stream = await self.stream(tenant_id, stream_id)
        except (StreamNotFound, FileNotFoundError):
            return None
        tenant = await self.tenants.tenant.remote(tenant_id)
        await self.model.check(tenant_id, tenant)
        threshold = await self.model.threshold(tenant)
        return {**stream["config"], "url": stream["url"] or None, "tenant": tenant, "threshold": threshold,
                "match_on": tenant.settings.match_on, "gates": tenant.settings.quality}

    async def resume(self, tenant_id: str) -> None:
        """Every persisted, enabled stream of the tenant gets its worker (found if still alive)."""
        for stream in self.files.store(tenant_id).streams(await self.files.event_keys(tenant_id)):
            if stream["config"].get("enabled", True):
                await self.workers.ensure(tenant_id, stream["stream_id"])

    def forget(self, tenant_id: str) -> None:
        self._streams.pop(tenant_id, None)
