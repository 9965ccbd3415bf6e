"""Key rotations: `Rotations` drives them for a TenantService (as `Migrations` drives model migrations), and
`RotationLog` keeps content-key rotations in progress (`{data_dir}/rotations.db`) so a restart resumes them.

A rotation is: a new content-key version (made at once by the KeyService), then every record re-sealed
under it, batch by batch (each batch one transaction of the tenant's file, so progress there is durable
by itself), then the old versions retired. This table says which tenants are between the first step and the
last: `Rotations.resume` carries those on when the service starts. Progress figures are informative; the tenant file's
key versions are the truth (a resumed rotation re-seals whatever is not yet under the current version).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from tenancy import sqlite

log = logging.getLogger(__name__)

RUNNING, DONE, FAILED = "running", "done", "failed"


class RotationLog:
    def __init__(self, path: str | Path, *, vfs: str | None = None) -> None:
        self._lock = threading.Lock()  # an apsw connection is for one thread at a time
        self._db = sqlite.connect(path, vfs=vfs)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rotations (tenant_id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
            " state TEXT NOT NULL, remaining INTEGER, total INTEGER, error TEXT, started_at REAL NOT NULL,"
            " updated_at REAL NOT NULL)")

    def start(self, tenant_id: str, version: int) -> dict:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO rotations VALUES (?, ?, ?, NULL, NULL, NULL, ?, ?)",
                             (tenant_id, version, RUNNING, now, now))
        return self.get(tenant_id)

    def update(self, tenant_id: str, *, state: str | None = None, remaining: int | None = None,
               total: int | None = None, error: str | None = None) -> dict:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE rotations SET state = coalesce(?, state), remaining = coalesce(?, remaining),"
                " total = coalesce(?, total), error = ?, updated_at = ? WHERE tenant_id = ?",
                (state, remaining, total, error, time.time(), tenant_id))
        return self.get(tenant_id)

    def get(self, tenant_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT tenant_id, version, state, remaining, total, error FROM rotations"
                                   " WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return _as_dict(row) if row else None

    def all(self) -> dict[str, dict]:
        with self._lock:
            rows = self._db.execute("SELECT tenant_id, version, state, remaining, total, error FROM rotations").fetchall()
        return {row[0]: _as_dict(row) for row in rows}

    def running(self) -> list[dict]:
        return [r for r in self.all().values() if r["state"] == RUNNING]

    def forget(self, tenant_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM rotations WHERE tenant_id = ?", (tenant_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _as_dict(row: tuple) -> dict:
    tenant_id, version, state, remaining, total, error = row
    out = {"tenant_id": tenant_id, "version": version, "state": state, "remaining": remaining, "total": total}
    if error:
        out["error"] = error
    return out


def rotations_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "rotations.db"


class Rotations:
    """Starts, drives, resumes and reports key rotations for a TenantService: the org root key (re-wraps tenant
    keys, at once) and a tenant's content key (a new version now, its records re-sealed in the background)."""

    def __init__(self, service) -> None:
        self.service = service
        self.log = RotationLog(rotations_path(service.data_dir))  # survives restarts: `resume`
        self._tasks: dict[str, asyncio.Task] = {}

    def all(self) -> dict[str, dict]:
        """Tenant id -> progress of its latest content-key rotation (persisted)."""
        return self.log.all()

    def task(self, tenant_id: str) -> asyncio.Task | None:
        """The re-encryption running in this process for the tenant, if any (tests wait on it or stop it)."""
        return self._tasks.get(tenant_id)

    async def rotate_root(self, principal: str = "admin") -> dict:
        """A new org root key (tenant keys re-wrapped by the KeyService); recorded in the org audit."""
        try:
            result = await self.service.keys.rotate_root.remote()
        except Exception as exc:
            await self.service.org_record(principal, "root_key.rotate", getattr(exc, "code", None) or type(exc).__name__)
            raise
        await self.service.org_record(principal, "root_key.rotate", details={
            "previous_root_id": result.get("previous_root_id"), "root_id": result.get("root_id"),
            "rewrapped": result.get("rewrapped")})
        return result

    async def rotate_tenant(self, tenant_id: str, batch_size: int = 500, principal: str = "admin") -> dict:
        """New content-key version now; records are re-encrypted in the background, batch by batch, while
        reads and writes go on. Old versions are retired once no record uses them."""
        tenant = self.service.registry.get(tenant_id)
        running = self._tasks.get(tenant_id)
        if running is not None and not running.done():
            return self.log.get(tenant_id)
        version = await self.service.keys.rotate_tenant.remote(tenant_id)
        progress = self.log.start(tenant_id, version)  # durable before any batch: a restart resumes it
        await self.service.org_record(principal, "tenant_key.rotate", "started", {"tenant_id": tenant_id, "version": version})
        await self.service.tenant_audit(tenant, principal, "key.rotate", "started", {"version": version})
        self._start(tenant, version, batch_size)
        return progress

    async def resume(self, batch_size: int = 500) -> list[str]:
        """Resume every rotation a previous run left running (re-encryption carries on from the file)."""
        resumed = []
        for progress in self.log.running():
            tenant_id = progress["tenant_id"]
            running = self._tasks.get(tenant_id)
            if running is not None and not running.done():
                continue
            try:
                tenant = self.service.registry.get(tenant_id)
            except Exception:  # deleted meanwhile
                self.log.forget(tenant_id)
                continue
            log.info("resuming the content-key rotation of %s to version %d", tenant_id, progress["version"])
            self._start(tenant, progress["version"], batch_size)
            resumed.append(tenant_id)
        return resumed

    def forget(self, tenant_id: str) -> None:
        """The tenant is deleted: its rotation stops and its entry goes."""
        task = self._tasks.pop(tenant_id, None)
        if task is not None and not task.done():
            task.cancel()
        self.log.forget(tenant_id)

    def _start(self, tenant, version: int, batch_size: int) -> None:
        self._tasks[tenant.tenant_id] = asyncio.get_running_loop().create_task(self._reencrypt(tenant, version, batch_size))

    async def _reencrypt(self, tenant, version: int, batch_size: int) -> None:
        tenant_id = tenant.tenant_id
        keys = self.service.keys
        try:
            while True:
                step = await (await self.service.shard_set(tenant)).primary.reencrypt_step.remote(batch_size)
                self.log.update(tenant_id, remaining=step["remaining"], total=step["total"])
                if step["remaining"] == 0:
                    break
            for old in await keys.versions.remote(tenant_id):
                if old != version:
                    await keys.retire_version.remote(tenant_id, old)
            self.log.update(tenant_id, state=DONE)
            await self.service.tenant_audit(tenant, "rotation", "key.rotate", "done", {"version": version})
        except Exception as exc:  # the rotation can be started again; records stay readable meanwhile
            log.exception("content-key rotation of %s failed", tenant_id)
            self.log.update(tenant_id, state=FAILED, error=f"{type(exc).__name__}: {exc}")
