"""TenantService: tenants, their keys of access, and the index actors that hold their faces.

It finds or creates a tenant's named index actor on demand, evicts idle ones, and runs the tenant
lifecycle (create with keys, delete with crypto-shredding). The TenantRouter deployment wraps it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError

from tenancy.audit import AuditLog, audit_path
from tenancy.actors import NAMESPACE, KeyServiceDataKeys, TenantIndexActor, actor_name, tenant_db_path
from tenancy.registry import Tenant, TenantRegistry, TenantSettings, load_or_create_admin_token

log = logging.getLogger(__name__)


# Index actor methods that change or reveal faces, and the audit action each is recorded as.
AUDITED = {"create_person": "person.create", "delete_person": "person.delete", "add_face": "face.enrol",
           "delete_face": "face.delete", "search": "search", "verify_person": "verify"}


def audit_counts(method: str, result) -> dict:
    """Counts for an audit event, derived from a call's result: never the result itself."""
    if method == "search" and isinstance(result, list):
        return {"faces": len(result), "matches": sum(len(m) for m in result)}
    if method in ("add_face", "verify_person"):
        return {"faces": 1}
    return {}


class Forbidden(Exception):
    """The caller's credentials are valid but not for this."""


class TenantUnavailable(Exception):
    """The tenant's index actor died while serving the call; the client may retry."""


class TenantService:
    def __init__(self, data_dir: str, keys, *, admin_token: str | None = None, idle_evict_s: float = 900.0,
                 index_actor_options: dict[str, Any] | None = None, index_options: dict[str, Any] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.keys = keys
        self.registry = TenantRegistry(self.data_dir / "registry.db")
        self._admin_token, created = load_or_create_admin_token(self.data_dir, admin_token)
        if created:
            log.warning("generated an admin token into %s (mode 0600)", self.data_dir / "admin_token")
        self.idle_evict_s = idle_evict_s
        self.actor_options = dict(index_actor_options or {})
        self.index_options = dict(index_options or {})
        self._actors: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._audits: dict[str, AuditLog] = {}
        self.rotations: dict[str, dict] = {}  # tenant id -> progress of its latest content-key rotation
        self._rotation_tasks: dict[str, asyncio.Task] = {}

    # ---- credentials ---------------------------------------------------------------------------------------
    def check_admin(self, token: str) -> None:
        if not hmac.compare_digest(token.encode(), self._admin_token.encode()):
            raise Forbidden("not an admin token")

    def authenticate(self, api_key: str) -> Tenant:
        return self.registry.authenticate(api_key)

    # ---- audit --------------------------------------------------------------------------------------------
    def audit(self, tenant_id: str) -> AuditLog:
        if tenant_id not in self._audits:
            self._audits[tenant_id] = AuditLog(audit_path(self.data_dir, tenant_id))
        return self._audits[tenant_id]

    def audit_events(self, tenant_id: str, since: float = 0.0, limit: int = 100) -> list[dict]:
        return self.audit(tenant_id).events(since, limit)

    # ---- tenant lifecycle ----------------------------------------------------------------------------------
    async def create_tenant(self, name: str, model: str, dim: int, settings: dict | None = None) -> tuple[Tenant, str]:
        parsed = TenantSettings.model_validate(settings or {})
        tenant, api_key = self.registry.create(name, model, dim, parsed)
        try:
            await self.keys.create_tenant.remote(tenant.tenant_id)
        except BaseException:
            # No keys, no tenant: a half-created tenant could never store a face.
            self.registry.delete(tenant.tenant_id)
            raise
        self.audit(tenant.tenant_id).record("admin", "tenant.create", "ok")
        return tenant, api_key

    def update_settings(self, tenant_id: str, patch: dict) -> Tenant:
        tenant = self.registry.update_settings(tenant_id, patch)
        self.audit(tenant_id).record("admin", "tenant.update", "ok")
        return tenant

    def rotate_api_key(self, tenant_id: str) -> str:
        api_key = self.registry.rotate_key(tenant_id)
        self.audit(tenant_id).record("admin", "api_key.rotate", "ok")
        return api_key

    async def delete_tenant(self, tenant_id: str) -> None:
        """Crypto-shredding: the index actor goes, the key hierarchy is destroyed, the files removed."""
        self.registry.get(tenant_id)
        await self.evict(tenant_id)
        await self.keys.destroy_tenant.remote(tenant_id)
        audit = self._audits.pop(tenant_id, None)
        if audit is not None:
            audit.close()
        log.info("tenant %s deleted: keys destroyed, files removed", tenant_id)
        shutil.rmtree(tenant_db_path(self.data_dir, tenant_id).parent, ignore_errors=True)
        self.registry.delete(tenant_id)

    # ---- key rotation ----------------------------------------------------------------------------------------
    async def rotate_tenant_key(self, tenant_id: str, batch_size: int = 500) -> dict:
        """New content-key version now; records are re-encrypted in the background, batch by batch, while
        reads and writes go on. Old versions are retired once no record uses them."""
        tenant = self.registry.get(tenant_id)
        running = self._rotation_tasks.get(tenant_id)
        if running is not None and not running.done():
            return self.rotations[tenant_id]
        version = await self.keys.rotate_tenant.remote(tenant_id)
        self.audit(tenant_id).record("admin", "key.rotate", "started", {"version": version})
        self.rotations[tenant_id] = {"tenant_id": tenant_id, "version": version, "state": "running", "remaining": None, "total": None}
        self._rotation_tasks[tenant_id] = asyncio.get_running_loop().create_task(self._reencrypt(tenant, version, batch_size))
        return self.rotations[tenant_id]

    async def _reencrypt(self, tenant: Tenant, version: int, batch_size: int) -> None:
        progress = self.rotations[tenant.tenant_id]
        try:
            while True:
                step = await self.call(tenant, "reencrypt_step", batch_size)
                progress.update(remaining=step["remaining"], total=step["total"])
                if step["remaining"] == 0:
                    break
            for old in await self.keys.versions.remote(tenant.tenant_id):
                if old != version:
                    await self.keys.retire_version.remote(tenant.tenant_id, old)
            progress["state"] = "done"
            self.audit(tenant.tenant_id).record("admin", "key.rotate", "done", {"version": version})
        except Exception as exc:  # the rotation can be started again; records stay readable meanwhile
            log.exception("content-key rotation of %s failed", tenant.tenant_id)
            progress.update(state="failed", error=f"{type(exc).__name__}: {exc}")

    # ---- index actors --------------------------------------------------------------------------------------
    async def actor(self, tenant: Tenant):
        """The tenant's index actor: found by name, else created (which activates the tenant)."""
        handle = self._actors.get(tenant.tenant_id)
        if handle is not None:
            return handle
        lock = self._locks.setdefault(tenant.tenant_id, asyncio.Lock())
        async with lock:
            if tenant.tenant_id not in self._actors:
                handle = TenantIndexActor.options(
                    name=actor_name(tenant.tenant_id), namespace=NAMESPACE, get_if_exists=True, **self.actor_options
                ).remote(tenant.tenant_id, str(self.data_dir), tenant.model, tenant.dim,
                         KeyServiceDataKeys(self.keys, tenant.tenant_id), self.index_options)
                await handle.info.remote()  # activation finished (or raised)
                self._actors[tenant.tenant_id] = handle
        return self._actors[tenant.tenant_id]

    async def call(self, tenant: Tenant, method: str, *args, retry_reads: bool = False, actor: str = "internal"):
        """Run `method` on the tenant's index actor, audited when it changes or reveals faces. Reads may be
        retried once after an actor crash (Ray restarts it and it reactivates from the file); writes are
        not: the caller never got an ack."""
        outcome, result = "error", None
        try:
            result = await self._call(tenant, method, *args, retry_reads=retry_reads)
            outcome = "ok"
            return result
        except Exception as exc:
            outcome = getattr(exc, "code", None) or type(getattr(exc, "cause", None) or exc).__name__
            raise
        finally:
            if method in AUDITED:
                self.audit(tenant.tenant_id).record(actor, AUDITED[method], outcome, audit_counts(method, result))

    async def _call(self, tenant: Tenant, method: str, *args, retry_reads: bool):
        for attempt in (0, 1):
            actor = await self.actor(tenant)
            try:
                return await getattr(actor, method).remote(*args)
            except RayActorError as exc:
                if not retry_reads or attempt:
                    raise TenantUnavailable(f"tenant index restarted during {method}; retry") from exc
                await asyncio.sleep(0.2)

    # ---- retention ------------------------------------------------------------------------------------------
    async def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete faces older than each tenant's retention period, each deletion audited."""
        now = time.time() if now is None else now
        expired: dict[str, int] = {}
        for tenant in self.registry.list():
            days = tenant.settings.retention_days
            if days is None:
                continue
            face_ids = await self._call(tenant, "expire_faces", now - days * 86400, retry_reads=False)
            for _ in face_ids:
                self.audit(tenant.tenant_id).record("retention", "face.expire", "ok", {"deleted": 1})
            expired[tenant.tenant_id] = len(face_ids)
        return expired

    async def evict(self, tenant_id: str) -> bool:
        handle = self._actors.pop(tenant_id, None)
        if handle is None:
            try:
                handle = ray.get_actor(actor_name(tenant_id), namespace=NAMESPACE)
            except ValueError:
                return False
        try:
            await handle.close.remote()
        except RayActorError:
            pass
        ray.kill(handle, no_restart=True)
        return True

    async def evict_idle(self, older_than_s: float | None = None) -> list[str]:
        """Evict tenants idle for `older_than_s` (default: the configured idle timeout)."""
        limit = self.idle_evict_s if older_than_s is None else older_than_s
        evicted = []
        for tenant_id, handle in list(self._actors.items()):
            try:
                idle = await handle.idle_seconds.remote()
            except RayActorError:
                idle = float("inf")
            if idle >= limit:
                await self.evict(tenant_id)
                evicted.append(tenant_id)
        if evicted:
            log.info("evicted idle tenants: %s", evicted)
        return evicted

    def active_tenants(self) -> list[str]:
        return list(self._actors)
