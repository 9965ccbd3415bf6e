"""TenantService: tenants, their keys of access, and the shard actors that hold their faces.

It finds or creates a tenant's named shard actor on demand, evicts idle ones, and runs the tenant
lifecycle (create with keys, delete with crypto-shredding). The TenantSupervisor deployment wraps it.

A tenant's gallery operations (search, persons, faces, corrections) are tenancy/gallery.py's, one typed method
each; this service finds their actors. Sharded tenants (setting `shards` = N > 1, see tenancy/actors/) have a
fixed layout per activation: a tenant's actors are created for the `shards` in its settings, and when the
settings name another layout (PATCH), the next call evicts the old actors and activates the new layout from the
file (re-sharding = re-activation; each new shard decrypts only its rows).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pydantic
import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from securegate import errors
from tenancy import sqlite
from tenancy.actors import NAMESPACE, KeyServiceAuditMac, KeyServiceDataKeys, TenantShardActor, actor_name, tenant_db_path
from tenancy.audit_log import OrgAudit
from tenancy.audit_trail import AuditTrail
from tenancy.migration import Migrations
from tenancy.placement import INACTIVE, ShardsUnplaced, ShardWatch, shard_options, shard_report
from tenancy.rotation import Rotations
from tenancy.admin_keys import AdminKey
from tenancy.registry import TenantRegistry, load_or_create_admin_token
from tenancy.tenant import Tenant, TenantSettings

log = logging.getLogger(__name__)


# How long a tenant's activation may take before callers get a 503 (1M faces activate in ~20 s).
ACTIVATION_TIMEOUT_S = 120.0


class Forbidden(Exception):
    """The caller's credentials are valid but not for this."""

    api_error = errors.Forbidden


class TenantUnavailable(Exception):
    """The tenant's shard actor died while serving the call; the client may retry."""

    api_error = errors.ServiceUnavailable


@dataclass
class ShardSet:
    """A tenant's live shard actors (TenantShardActor): handles[k] is shard k; handles[0] is the primary."""

    handles: list

    @property
    def primary(self):
        return self.handles[0]

    @property
    def shards(self) -> int:
        return len(self.handles)


def _invalid_settings(message: str, shards: int) -> pydantic.ValidationError:
    """A settings refusal shaped like pydantic's own, so the API maps it to 400 invalid_request."""
    return pydantic.ValidationError.from_exception_data(
        "TenantSettings", [{"type": "value_error", "loc": ("shards",), "input": shards, "ctx": {"error": ValueError(message)}}])


def check_layout(settings: TenantSettings) -> None:
    if settings.shards > 1 and settings.match_on == "centroid":
        raise _invalid_settings("match_on 'centroid' needs shards = 1 (centroid search is not sharded)", settings.shards)



class TenantService:
    def __init__(self, data_dir: str, keys, *, admin_token: str | None = None, idle_evict_s: float = 900.0,
                 shard_actor_options: dict[str, Any] | None = None, index_options: dict[str, Any] | None = None,
                 embedders: dict[str, Any] | None = None, restart_wait_s: float = 20.0) -> None:
        self.data_dir = Path(data_dir)
        self.keys = keys
        self.registry = TenantRegistry(self.data_dir / "registry.db")
        bootstrap_token, created = load_or_create_admin_token(self.data_dir, admin_token)
        self.registry.set_bootstrap_admin_key(bootstrap_token)  # the admin key `bootstrap`, unless revoked
        if created:
            log.warning("generated an admin token into %s (mode 0600)", self.data_dir / "admin_token")
        self.idle_evict_s = idle_evict_s
        self.actor_options = dict(shard_actor_options or {})
        self.index_options = dict(index_options or {})
        # How long a call waits for a shard actor that has no process (its node lost, no room elsewhere yet).
        self.watch = ShardWatch(give_up_s=restart_wait_s)
        self._actors: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.audit = AuditTrail(self.data_dir, keys)  # the tenants' chains (read-side) and the org's
        self.rotations = Rotations(self)  # key rotations (tenancy/rotation.py), resumed when the TenantSupervisor starts
        # Model migrations ({pack name: Embedder handle} of the packs served; resumed like rotations).
        self.migrations = Migrations(self, embedders or {})

    # ---- credentials ---------------------------------------------------------------------------------------
    def check_admin(self, token: str, scope: str) -> AdminKey:
        """The live admin key `token` is, if it holds `scope`; else Forbidden (tenancy/admin_keys.py)."""
        key = self.registry.authenticate_admin(token)
        key.require(scope)
        return key

    def authenticate(self, api_key: str) -> Tenant:
        return self.registry.authenticate(api_key)

    # ---- audit (tenancy/audit_trail.py) ---------------------------------------------------------------------
    @property
    def org_audit(self) -> OrgAudit:
        return self.audit.org

    def audit_events(self, tenant_id: str, since: int = 0, limit: int = 100) -> list[dict]:
        return self.audit.tenant_events(tenant_id, since, limit)

    async def verify_tenant_audit(self, tenant_id: str) -> dict:
        """Whether the tenant's audit chain is intact, or where it breaks (tenancy.chain.VerifyResult)."""
        self.registry.get(tenant_id)
        return await self.audit.verify_tenant(tenant_id)

    async def verify_org_audit(self) -> dict:
        return await self.audit.verify_org()

    def org_audit_events(self, since: int = 0, limit: int = 100) -> list[dict]:
        return self.audit.org_events(since, limit)

    async def org_record(self, principal: str, action: str, outcome: str = "ok", details: dict | None = None) -> int:
        """Append to the org audit; its head is checkpointed and anchored at once."""
        return await self.audit.record(principal, action, outcome, details)

    async def checkpoint_org_audit(self, force: bool = False) -> None:
        await self.audit.checkpoint_org(force)

    async def tenant_audit(self, tenant: Tenant, principal: str, action: str, outcome: str = "ok",
                           counts: dict | None = None) -> None:
        """An entry in the tenant's own chain, written by its primary actor (the file's one writer)."""
        shard_set = await self.shard_set(tenant)
        ref = shard_set.primary.record_audit.remote(principal, action, outcome, counts)
        await self.watch.result(tenant.tenant_id, ref, [shard_set.primary], "audit", cancel=[ref])

    # ---- tenant lifecycle ----------------------------------------------------------------------------------
    async def create_tenant(self, name: str, model: str, dim: int, settings: dict | None = None,
                            principal: str = "admin") -> tuple[Tenant, str]:
        parsed = TenantSettings.model_validate(settings or {})
        check_layout(parsed)
        tenant, api_key = self.registry.create(name, model, dim, parsed)
        try:
            await self.keys.create_tenant.remote(tenant.tenant_id)
        except BaseException:
            # No keys, no tenant: a half-created tenant could never store a face.
            self.registry.delete(tenant.tenant_id)
            raise
        await self.org_record(principal, "tenant.create", details={"tenant_id": tenant.tenant_id})
        await self.tenant_audit(tenant, principal, "tenant.create")
        return tenant, api_key

    async def update_settings(self, tenant_id: str, patch: dict, principal: str = "admin") -> Tenant:
        """A change of `shards` takes effect at the tenant's next activation: the next call finds its actors
        built for another layout, evicts them and re-activates with the new one."""
        current = self.registry.get(tenant_id).settings.model_dump()
        for key, value in patch.items():
            if key == "quality" and isinstance(value, dict):
                current["quality"].update(value)
            else:
                current[key] = value
        check_layout(TenantSettings.model_validate(current))
        tenant = self.registry.update_settings(tenant_id, patch)
        await self.org_record(principal, "tenant.update", details={"tenant_id": tenant_id, "settings": sorted(patch)})
        await self.tenant_audit(tenant, principal, "tenant.update")
        return tenant

    async def rotate_api_key(self, tenant_id: str, principal: str = "admin") -> str:
        api_key = self.registry.rotate_key(tenant_id)
        await self.org_record(principal, "api_key.rotate", details={"tenant_id": tenant_id})
        await self.tenant_audit(self.registry.get(tenant_id), principal, "api_key.rotate")
        return api_key

    async def delete_tenant(self, tenant_id: str, principal: str = "admin") -> dict:
        """Crypto-shredding: the shard actor goes, the key hierarchy is destroyed, the files removed; the org
        audit keeps an erasure receipt signed with the provider's public-key signature (what was destroyed:
        counts and key ids, nothing personal), which anyone can check with the published key."""
        self.registry.get(tenant_id)
        await self.evict(tenant_id)
        destroyed = self._tenant_counts(tenant_id)
        versions = await self.keys.versions.remote(tenant_id)
        key_ids = [f"tek:{tenant_id}"] + [f"cek:{tenant_id}:embeddings:v{v}" for v in versions]
        receipt, signature = await self.audit.sign_erasure(tenant_id, destroyed, key_ids)  # nothing destroyed yet
        await self.keys.destroy_tenant.remote(tenant_id)
        log.info("tenant %s deleted: keys destroyed, files removed", tenant_id)
        shutil.rmtree(tenant_db_path(self.data_dir, tenant_id).parent, ignore_errors=True)
        self.registry.delete(tenant_id)
        self.rotations.forget(tenant_id)
        self.migrations.forget(tenant_id)
        self.audit.forget_tenant(tenant_id)
        seq = await self.audit.record_erasure(principal, receipt, signature)
        return {"receipt_seq": seq, **receipt, "signature": signature}

    def _tenant_counts(self, tenant_id: str) -> dict[str, int]:
        """Rows about to be destroyed: persons, faces, audit entries (its file), camera events (events.db)."""
        directory = tenant_db_path(self.data_dir, tenant_id).parent
        counts = {"persons": 0, "faces": 0, "audit_entries": 0, "events": 0}
        for file, key, table in (("embeddings.db", "persons", "persons"), ("embeddings.db", "faces", "faces"),
                                 ("embeddings.db", "audit_entries", "audit_chain"), ("events.db", "events", "events")):
            if not (directory / file).exists():
                continue
            conn = sqlite.connect(directory / file)
            try:
                counts[key] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            except apsw.SQLError as exc:
                if "no such table" not in str(exc):
                    raise
            finally:
                conn.close()
        return counts

    # ---- shard actors --------------------------------------------------------------------------------------
    async def actor(self, tenant: Tenant):
        """The tenant's (primary) shard actor: found by name, else created (which activates the tenant)."""
        return (await self.shard_set(tenant)).primary

    async def shard_set(self, tenant: Tenant) -> ShardSet:
        """The tenant's shard actors for the layout its settings ask for, activated; an older layout is
        evicted first (re-sharding happens at activation)."""
        wanted = tenant.settings.shards
        shard_set = self._actors.get(tenant.tenant_id)
        if shard_set is not None and shard_set.shards == wanted:
            return shard_set
        lock = self._locks.setdefault(tenant.tenant_id, asyncio.Lock())
        async with lock:
            shard_set = self._actors.get(tenant.tenant_id)
            if shard_set is None or shard_set.shards != wanted:
                if shard_set is not None:
                    log.info("tenant %s: re-sharding %d -> %d shards", tenant.tenant_id, shard_set.shards, wanted)
                    await self.evict(tenant.tenant_id)
                self._actors[tenant.tenant_id] = await self._open(tenant, wanted)
        return self._actors[tenant.tenant_id]

    def forget_handles(self, tenant_id: str) -> None:
        """Drop the tenant's cached actor handles (one died): the next call finds or re-creates its actors by name."""
        self._actors.pop(tenant_id, None)

    def _spawn(self, tenant: Tenant, shard: int, shards: int):
        try:  # the binding as it stands (a caller's Tenant may predate a model switch)
            tenant = self.registry.get(tenant.tenant_id)
        except Exception:
            pass
        return TenantShardActor.options(
            name=actor_name(tenant.tenant_id, shard), namespace=NAMESPACE, get_if_exists=True,
            **shard_options(self.actor_options, shards)  # spread over index nodes when sharded (tenancy/placement.py)
        ).remote(tenant.tenant_id, str(self.data_dir), tenant.model, tenant.dim,
                 KeyServiceDataKeys(self.keys, tenant.tenant_id), self.index_options, shard, shards,
                 KeyServiceAuditMac(self.keys, tenant.tenant_id), restart_wait_s=self.watch.give_up_s)

    async def _open(self, tenant: Tenant, shards: int) -> ShardSet:
        tenant_id = tenant.tenant_id
        handles = [self._spawn(tenant, k, shards) for k in range(shards)]
        found = await self._activation(tenant_id, asyncio.gather(*(h.position.remote() for h in handles)), handles)
        if any(tuple(f) != (k, shards) for k, f in enumerate(found)):
            # Actors alive under these names were built for another layout (another TenantSupervisor replica, or a
            # previous run): evict them all and start over.
            log.info("tenant %s: live shard actors have another layout %s; re-activating", tenant.tenant_id, found)
            await self.evict(tenant.tenant_id)
            handles = [self._spawn(tenant, k, shards) for k in range(shards)]
            await self._activation(tenant_id, asyncio.gather(*(h.position.remote() for h in handles)), handles)
        # The primary first (it may create the file's schema), then the shards, each decrypting its own rows.
        await self._activation(tenant_id, handles[0].info.remote(), handles[:1])
        if shards > 1:
            await self._activation(tenant_id, asyncio.gather(*(h.info.remote() for h in handles[1:])), handles[1:])
        return ShardSet(handles)

    async def _activation(self, tenant_id: str, work, handles: list):
        """Bounded: an actor Ray cannot place (no free resources) gives a 503, not a hang of every call: after the
        activation timeout for a new one, after the watch's wait for a restarting one (ShardsUnplaced)."""
        try:
            return await asyncio.wait_for(self.watch.result(tenant_id, work, handles, "activation"), ACTIVATION_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise TenantUnavailable(f"tenant {tenant_id} could not be activated in time; retry") from exc

    # ---- retention ------------------------------------------------------------------------------------------
    async def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        """Delete faces older than each tenant's retention period, each deletion audited."""
        now = time.time() if now is None else now
        expired: dict[str, int] = {}
        for tenant in self.registry.list():
            days = tenant.settings.retention_days
            if days is None:
                continue
            # The primary deletes and chains the audit entry in one transaction.
            face_ids = await (await self.shard_set(tenant)).primary.expire_faces.remote(now - days * 86400)
            expired[tenant.tenant_id] = len(face_ids)
        return expired

    async def evict(self, tenant_id: str) -> bool:
        """Close and kill every shard actor of the tenant (all shards, whatever layout they were built for)."""
        shard_set = self._actors.pop(tenant_id, None)
        handles = list(shard_set.handles) if shard_set is not None else []
        prefix = actor_name(tenant_id)
        try:
            names = {entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
                     if entry["namespace"] == NAMESPACE and (entry["name"] == prefix or entry["name"].startswith(prefix + "#"))}
        except Exception:  # listing is best effort; the primary's name is always tried
            names = {prefix}
        names.add(prefix)
        for name in sorted(names):
            try:
                handles.append(ray.get_actor(name, namespace=NAMESPACE))
            except ValueError:
                pass
        if not handles:
            return False
        unique = list(dict.fromkeys(handles))  # a Ray actor handle hashes and compares by its actor's id
        for handle in unique:
            try:
                await self.watch.result(tenant_id, handle.close.remote(), [handle], "close")
            except (RayActorError, ShardsUnplaced):
                pass
            ray.kill(handle, no_restart=True)
        # Names are released once the kills land; wait so the next activation creates fresh actors.
        deadline = time.monotonic() + 10
        for name in sorted(names):
            while time.monotonic() < deadline:
                try:
                    ray.get_actor(name, namespace=NAMESPACE)
                except ValueError:
                    break
                await asyncio.sleep(0.05)
        # The actor checkpointed its chain as it closed: that checkpoint goes into the org audit too.
        if self.audit.mirror_tenant(tenant_id):
            await self.checkpoint_org_audit()
        return True

    async def evict_idle(self, older_than_s: float | None = None) -> list[str]:
        """Evict tenants idle for `older_than_s` (default: the configured idle timeout)."""
        limit = self.idle_evict_s if older_than_s is None else older_than_s
        evicted = []
        for tenant_id, shard_set in list(self._actors.items()):
            try:
                # A sharded tenant's primary takes part in every search and write, so it is the idle clock.
                idle = await self.watch.result(tenant_id, shard_set.primary.idle_seconds.remote(), [shard_set.primary], "idle check")
            except (ActorUnavailableError, ShardsUnplaced):  # Ray is restarting it (e.g. after a node loss): not idle
                continue
            except RayActorError:
                idle = float("inf")
            if idle >= limit:
                await self.evict(tenant_id)
                evicted.append(tenant_id)
        if evicted:
            log.info("evicted idle tenants: %s", evicted)
        return evicted

    async def checkpoint_audits(self) -> None:
        """The audit checkpoint schedule: every active tenant's chain when due, its newest checkpoint mirrored into
        the org audit, and the org chain."""
        for tenant_id, shard_set in list(self._actors.items()):
            try:
                await self.watch.result(tenant_id, shard_set.primary.audit_checkpoint.remote(), [shard_set.primary], "audit checkpoint")
            except (RayActorError, ShardsUnplaced):
                log.warning("tenant %s: audit checkpoint skipped (actor unavailable)", tenant_id)
            self.audit.mirror_tenant(tenant_id)
        await self.checkpoint_org_audit()

    async def placement(self, tenant_id: str) -> dict:
        """The tenant as `get` shows it, and where each of its shard actors runs now: state, node id and IP, process,
        restarts (tenancy/placement.py). Read from Ray's actor table: nothing is activated or called."""
        tenant = self.registry.get(tenant_id)
        names = [actor_name(tenant_id, k) for k in range(tenant.settings.shards)]
        shards = await asyncio.to_thread(shard_report, names, NAMESPACE)
        return {**tenant.public(), "active": any(s["state"] != INACTIVE for s in shards), "shards": shards}

    def active_tenants(self) -> list[str]:
        return list(self._actors)

