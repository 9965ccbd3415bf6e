"""The StreamWorker actors of every tenant's enabled streams: started, stopped, watched, asked their status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from streams.worker import NAMESPACE, StreamWorkerActor, worker_name


class WorkerPool:
    """Needs the streams settings (`worker_options`, `queue_frames`) and the handles each worker is given: the
    StreamSupervisor's own, the Detector, the Embedder and the TenantSupervisor."""

    def __init__(self, cfg, supervisor, detector, embedder, tenants) -> None:
        self.cfg, self.supervisor, self.detector, self.embedder, self.tenants = cfg, supervisor, detector, embedder, tenants
        self._workers: dict[tuple[str, str], Any] = {}

    async def ensure(self, tenant_id: str, stream_id: str):
        """The stream's worker, started (a detached, named actor: found again if still alive)."""
        key = (tenant_id, stream_id)
        worker = self._workers.get(key)
        if worker is None:
            worker = StreamWorkerActor.options(name=worker_name(tenant_id, stream_id), namespace=NAMESPACE,
                                               get_if_exists=True, lifetime="detached", **self.cfg.worker_options
                                               ).remote(tenant_id, stream_id, self.supervisor, self.detector,
                                                        self.embedder, self.tenants, self.cfg.queue_frames)
            self._workers[key] = worker
        await worker.start.remote()
        return worker

    async def stop(self, tenant_id: str, stream_id: str) -> None:
        worker = self._workers.pop((tenant_id, stream_id), None)
        if worker is None:
            try:
                worker = ray.get_actor(worker_name(tenant_id, stream_id), namespace=NAMESPACE)
            except ValueError:
                return
        try:
            await asyncio.wait_for(worker.stop.remote(), 10)
        except Exception:
            pass
        ray.kill(worker, no_restart=True)
        # The name is released once the kill lands: wait, or a restart (PATCH) would find the dying actor.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ray.get_actor(worker_name(tenant_id, stream_id), namespace=NAMESPACE)
            except ValueError:
                break
            await asyncio.sleep(0.05)

    async def stop_tenant(self, tenant_id: str) -> int:
        """Every worker of the tenant stopped, those this replica did not start included. Returns how many."""
        names = {k[1] for k in self._workers if k[0] == tenant_id}
        try:
            names |= {e["name"].split(":", 2)[2] for e in ray.util.list_named_actors(all_namespaces=True)
                      if e["namespace"] == NAMESPACE and e["name"].startswith(f"stream:{tenant_id}:")}
        except Exception:
            pass
        for stream_id in names:
            await self.stop(tenant_id, stream_id)
        return len(names)

    async def status(self, tenant_id: str, stream: dict) -> dict | None:
        if not stream["config"].get("enabled", True):
            return None
        worker = self._workers.get((tenant_id, stream["stream_id"]))
        if worker is None:
            return {"state": "stopped"}
        try:
            return await asyncio.wait_for(worker.status.remote(), 3.0)
        except Exception:  # restarting (Ray brings it back) or slow: say so
            return {"state": "restarting"}

    async def watch_forever(self) -> None:
        """A worker Ray restarted after a crash comes back idle (its constructor cannot start the loop): the
        ping starts it again, so it resumes within a couple of seconds."""
        while True:
            await asyncio.sleep(2.0)
            for key, worker in list(self._workers.items()):
                try:
                    await asyncio.wait_for(worker.ping.remote(), 5.0)
                except Exception:  # restarting right now: the next round
                    pass
