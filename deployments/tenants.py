"""TenantSupervisor deployment: fronts the per-tenant shard actors for the ingress and for Python callers.

Thin: `tenancy.TenantService` runs tenants and their actors, `tenancy.TenantGallery` the gallery operations,
one typed method each (requests and answers in tenancy/operations.py; the caller is authenticated inside the
operation). The idle-eviction loop starts with the first call (there is nothing to evict before a tenant has
been used).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from ray import serve
from ray.serve.handle import DeploymentHandle

from securegate import errors, metrics
from securegate.settings import Settings
from tenancy import operations as op
from tenancy.admin_keys import AdminKey
from tenancy.gallery import TenantGallery
from tenancy.ratelimit import RateLimiter
from tenancy.service import TenantService
from tenancy.storage import DataDisk
from tenancy.tenant import Tenant

log = logging.getLogger("ray.serve")


def as_api_errors(method):
    """Domain errors leave this replica as the API errors they declare (securegate.errors), so its callers,
    the HTTP ingress among them, never unpickle tenancy's exception types (their modules import apsw, faiss)."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            mapped = errors.declared_api_error(exc)
            if mapped is None:
                raise
            if isinstance(mapped, errors.InsufficientStorage):
                self.disk_full(True)
            raise mapped from None

    return wrapper


@serve.deployment(max_ongoing_requests=128, ray_actor_options={"num_cpus": 0.1})
class TenantSupervisor:
    def __init__(self, settings: dict, keys: DeploymentHandle, embedders: dict[str, DeploymentHandle] | None = None) -> None:
        """`embedders`: {pack name: Embedder handle}, what model migrations re-embed kept crops with."""
        cfg = Settings.model_validate(settings)
        self.service = TenantService(
            cfg.data_dir, keys,
            admin_token=os.environ.get("SECUREGATE_ADMIN_TOKEN"),
            idle_evict_s=cfg.tenancy.idle_evict_s,
            shard_actor_options=cfg.tenancy.shard_actor_options,
            index_options={"ann_min_faces": cfg.tenancy.ann_min_faces},
            embedders=embedders,
            restart_wait_s=cfg.tenancy.restart_wait_s,
        )
        self.retention_check_s = cfg.tenancy.retention_check_s
        self.data_disk = DataDisk(cfg.data_dir)
        self._disk_full = False
        self.rate_limiter = RateLimiter()
        self.embedders = dict(embedders or {})
        self._thresholds: dict[str, float] | None = None  # {model id: its default threshold}, of the packs served
        self.gallery = TenantGallery(self.service, self.rate_limiter, self._model_threshold, cfg.verify_threshold)
        self._evictor: asyncio.Task | None = None

    async def _model_threshold(self, model: str) -> float:
        if self._thresholds is None:
            infos = await asyncio.gather(*(h.info.remote() for h in self.embedders.values()))
            self._thresholds = {i["model_id"]: float(i["default_threshold"]) for i in infos}
        if model not in self._thresholds:
            raise errors.ModelMismatch(f"no model pack served here is {model}")
        return self._thresholds[model]

    def _ensure_evictor(self) -> None:
        if self._evictor is None:
            self._evictor = asyncio.get_running_loop().create_task(self._evict_forever())
            # Rotations a previous run left half done carry on (their progress is persisted).
            asyncio.get_running_loop().create_task(self.service.rotations.resume())
            asyncio.get_running_loop().create_task(self.service.migrations.resume())  # so do model migrations

    async def _evict_forever(self) -> None:
        """Housekeeping: idle eviction every few seconds, retention every `retention_check_s`."""
        period = max(0.5, min(30.0, self.service.idle_evict_s / 4))
        next_retention = 0.0
        while True:
            await asyncio.sleep(period)
            try:
                loop_time = asyncio.get_running_loop().time()
                if loop_time >= next_retention:
                    next_retention = loop_time + self.retention_check_s
                    await self.service.enforce_retention()
                if self._disk_full:
                    await self.storage()
                await self.service.checkpoint_audits()
                await self.service.evict_idle()
                metrics.active_tenants().set(len(self.service.active_tenants()))
            except Exception:  # housekeeping: log and keep serving
                log.exception("tenant housekeeping failed")

    # ---- the data disk (tenancy/storage.py) ---
    async def storage(self) -> dict:
        """{writable, free_bytes} of the data disk, probed with a durable write now (readiness)."""
        checked = await asyncio.to_thread(self.data_disk.check)
        self.disk_full(not checked["writable"])
        return checked

    def disk_full(self, full: bool) -> None:
        self._disk_full = full  # while set, housekeeping probes the disk until it takes writes again
        metrics.data_disk_full().set(int(full), tags={"data_dir": str(self.data_disk.data_dir)})

    # ---- credentials and tenants (admin) ------------------------------------------------------------------
    @as_api_errors
    async def check_admin(self, token: str, scope: str) -> AdminKey:
        """The admin key `token` is, if live and holding `scope` (read from the registry on every call)."""
        return self.service.check_admin(token, scope)

    @as_api_errors
    async def create_admin_key(self, name: str, scopes: list[str], principal: str) -> tuple[dict, str]:
        key, token = self.service.registry.create_admin_key(name, scopes)
        await self.service.org_record(principal, "admin_key.create", details={"name": key.name, "scopes": list(key.scopes)})
        return key.public(), token

    async def list_admin_keys(self) -> list[dict]:
        return [k.public() for k in self.service.registry.admin_keys()]

    @as_api_errors
    async def revoke_admin_key(self, name: str, principal: str) -> dict:
        key = self.service.registry.revoke_admin_key(name)
        await self.service.org_record(principal, "admin_key.revoke", details={"name": key.name})
        return key.public()

    @as_api_errors
    async def authenticate(self, api_key: str, cost: float = 0.0) -> Tenant:
        """The key's tenant; with `cost`, also spends that many of the tenant's rate-limit tokens."""
        tenant = self.service.authenticate(api_key)
        if cost:
            self.rate_limiter.take(tenant.tenant_id, tenant.settings.rate_limit_per_s, tenant.settings.rate_limit_burst, cost)
        return tenant

    @as_api_errors
    async def create_tenant(self, name: str, model: str, dim: int, settings: dict | None,
                            principal: str = "admin") -> tuple[dict, str]:
        self._ensure_evictor()
        tenant, api_key = await self.service.create_tenant(name, model, dim, settings, principal)
        return tenant.public(), api_key

    async def list_tenants(self) -> list[dict]:
        return [t.public() for t in self.service.registry.list()]

    @as_api_errors
    async def tenant(self, tenant_id: str) -> Tenant:
        """The tenant itself (for internal callers such as camera workers, which hold no API key)."""
        return self.service.registry.get(tenant_id)

    @as_api_errors
    async def get_tenant(self, tenant_id: str) -> dict:
        return self.service.registry.get(tenant_id).public()

    @as_api_errors
    async def tenant_placement(self, tenant_id: str) -> dict:
        return await self.service.placement(tenant_id)

    @as_api_errors
    async def update_tenant(self, tenant_id: str, settings: dict, principal: str = "admin") -> dict:
        return (await self.service.update_settings(tenant_id, settings, principal)).public()

    @as_api_errors
    async def rotate_api_key(self, tenant_id: str, principal: str = "admin") -> str:
        return await self.service.rotate_api_key(tenant_id, principal)

    @as_api_errors
    async def delete_tenant(self, tenant_id: str, principal: str = "admin") -> dict:
        """Returns the erasure receipt written to the org audit."""
        return await self.service.delete_tenant(tenant_id, principal)

    @as_api_errors
    async def rotate_tenant_key(self, tenant_id: str, principal: str = "admin") -> dict:
        self._ensure_evictor()
        return await self.service.rotations.rotate_tenant(tenant_id, principal=principal)

    @as_api_errors
    async def rotate_root_key(self, principal: str = "admin") -> dict:
        return await self.service.rotations.rotate_root(principal)

    async def rotations(self) -> dict:
        return self.service.rotations.all()

    @as_api_errors
    async def migrate(self, tenant_id: str, pack: str, batch_size: int, hold: bool, pause_s: float = 0.0,
                      principal: str = "admin") -> dict:
        """Start (or release, `hold: false`) a model migration of the tenant onto `pack` (tenancy/migration.py)."""
        self._ensure_evictor()
        return await self.service.migrations.start(tenant_id, pack, batch_size=batch_size, hold=hold, pause_s=pause_s,
                                                   principal=principal)

    @as_api_errors
    async def migration(self, tenant_id: str) -> dict:
        self._ensure_evictor()  # a restarted TenantSupervisor resumes migrations on its first call
        return self.service.migrations.status(tenant_id)

    # ---- a tenant's gallery: one call per request (tenancy/gallery.py) ------------------------------------------
    async def _gallery(self, operation, request):
        self._ensure_evictor()
        try:
            return await operation(request)
        finally:
            metrics.active_tenants().set(len(self.service.active_tenants()))

    @as_api_errors
    async def search(self, request: op.Search) -> op.SearchAnswer:
        return await self._gallery(self.gallery.search, request)

    @as_api_errors
    async def verify_person(self, request: op.VerifyPerson) -> op.Verification:
        return await self._gallery(self.gallery.verify_person, request)

    @as_api_errors
    async def create_person(self, request: op.CreatePerson) -> op.PersonCreated:
        return await self._gallery(self.gallery.create_person, request)

    @as_api_errors
    async def get_person(self, request: op.GetPerson) -> op.PersonView:
        return await self._gallery(self.gallery.get_person, request)

    @as_api_errors
    async def list_persons(self, request: op.ListPersons) -> op.PersonPage:
        return await self._gallery(self.gallery.list_persons, request)

    @as_api_errors
    async def find_person(self, request: op.FindPerson) -> op.PersonPage:
        return await self._gallery(self.gallery.find_person, request)

    @as_api_errors
    async def create_person_with_faces(self, request: op.CreatePersonWithFaces) -> op.PersonWithFacesCreated:
        return await self._gallery(self.gallery.create_person_with_faces, request)

    @as_api_errors
    async def delete_person(self, request: op.DeletePerson) -> op.Done:
        return await self._gallery(self.gallery.delete_person, request)

    @as_api_errors
    async def enrol_face(self, request: op.EnrolFace) -> op.FaceEnrolled:
        return await self._gallery(self.gallery.enrol_face, request)

    @as_api_errors
    async def add_samples(self, request: op.AddSamples) -> op.FacesAdded:
        return await self._gallery(self.gallery.add_samples, request)

    @as_api_errors
    async def delete_face(self, request: op.DeleteFace) -> op.Done:
        return await self._gallery(self.gallery.delete_face, request)

    @as_api_errors
    async def add_rejections(self, request: op.AddRejections) -> op.RejectionsAdded:
        return await self._gallery(self.gallery.add_rejections, request)

    @as_api_errors
    async def reject_face(self, request: op.RejectFace) -> op.RejectionsAdded:
        return await self._gallery(self.gallery.reject_face, request)

    @as_api_errors
    async def list_rejections(self, request: op.ListRejections) -> op.RejectionList:
        return await self._gallery(self.gallery.list_rejections, request)

    @as_api_errors
    async def delete_rejection(self, request: op.DeleteRejection) -> op.Done:
        return await self._gallery(self.gallery.delete_rejection, request)

    @as_api_errors
    async def merge_persons(self, request: op.MergePersons) -> op.PersonsMerged:
        return await self._gallery(self.gallery.merge_persons, request)

    @as_api_errors
    async def move_face(self, request: op.MoveFace) -> op.FaceMoved:
        return await self._gallery(self.gallery.move_face, request)

    @as_api_errors
    async def find_imported(self, request: op.FindImported) -> op.ImportedFound:
        return await self._gallery(self.gallery.find_imported, request)

    @as_api_errors
    async def import_faces(self, request: op.ImportFaces) -> op.FacesImported:
        return await self._gallery(self.gallery.import_faces, request)

    @as_api_errors
    async def audit_events(self, request: op.AuditEvents) -> op.AuditPage:
        return await self.gallery.audit_events(request)

    @as_api_errors
    async def verify_tenant_audit(self, request: op.VerifyAudit) -> op.AuditVerification:
        return await self.gallery.verify_audit(request)

    @as_api_errors
    async def tenant_info(self, tenant_id: str) -> dict:
        """The tenant's index (faces, memory, tier, shards): for operators and tests; activates the tenant."""
        return await self._gallery(self.gallery.info, tenant_id)

    @as_api_errors
    async def verify_audit(self, tenant_id: str | None) -> dict:
        """A tenant's audit chain (None: the org's) checked, for an admin: intact, or where it breaks."""
        if tenant_id is None:
            return await self.service.verify_org_audit()
        return await self.service.verify_tenant_audit(tenant_id)

    @as_api_errors
    async def org_audit_events(self, since: int, limit: int) -> list[dict]:
        return self.service.org_audit_events(since, limit)

    @as_api_errors
    async def org_record(self, principal: str, action: str, details: dict | None = None) -> int:
        """An entry in the org audit (the Ingress records admin reads: who looked at what)."""
        return await self.service.org_record(principal, action, details=details)

    @as_api_errors
    async def erasure_receipt(self, tenant_id: str) -> dict:
        """The signed erasure receipt of a deleted tenant, with the public key that checks it."""
        found = await self.service.audit.erasure_receipt(tenant_id)
        if found is None:
            raise errors.NotFound(f"no signed erasure receipt for tenant {tenant_id}")
        return found

    @as_api_errors
    async def signing_keys(self) -> list[dict]:
        return await self.service.audit.signing_keys()

    async def resume_rotations(self) -> list[str]:
        return await self.service.rotations.resume()

    async def enforce_retention(self, now: float | None = None) -> dict[str, int]:
        return await self.service.enforce_retention(now)

    async def evict(self, tenant_id: str) -> bool:
        return await self.service.evict(tenant_id)

    async def evict_idle(self, older_than_s: float | None = None) -> list[str]:
        return await self.service.evict_idle(older_than_s)

    async def active_tenants(self) -> list[str]:
        return self.service.active_tenants()
