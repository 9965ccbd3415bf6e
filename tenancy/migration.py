"""Model migration: a tenant's gallery re-embedded with another recognizer while the tenant keeps serving.

Needs the tenant's kept enrolment crops (tenant setting `keep_enrolment_photos`, tenancy/store/
`face_crops`): a vector cannot be turned into another model's vector, a face crop can be embedded again.

    start ─► batches: the primary shard actor decrypts the kept crops of up to `batch_size` faces lacking a
             shadow vector, sends them to the target pack's Embedder deployment in messages small enough for
             Ray to inline (tenancy/reembed.py: never through the object store, which spills to disk) and
             seals the vectors into `face_shadow` (AAD tenant | face | target model), one durable commit per batch
          ─► switch: ONE transaction of the tenant's file swaps every face's vector for its shadow vector and
             the file's binding (meta model, dim); the actor reloads its index; then the registry's binding
             changes and the tenant's actors are evicted (re-activated with the new model on the next call)

Until the switch the tenant is bound to the old model: searches, enrolments and the index all use it. Faces
enrolled meanwhile have no shadow vector yet: the switch refuses (changes nothing) while any face lacks
one, and the driver embeds those and tries again, so no face is left behind. A request embedded with the
old model is never compared against the new model's vectors (the model-bound check of tenancy/gallery.py):
during the switch it is refused (503 `unavailable`, retry); after it, with 422 `model_mismatch` naming the
tenant's model (the Ingress embeds the image again with it, deployments/tenant_models.py).

Progress is the tenant file itself (shadow rows are committed per batch); this log (`{data_dir}/
migrations.db`) says which tenants are migrating, to what, and how far, so a restarted TenantSupervisor
resumes them (`resume`). `hold`: build the shadow and wait for an explicit switch (`securegate migrate
--switch`), e.g. to switch in a quiet hour.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from ray.exceptions import RayActorError

from securegate import errors
from tenancy import sqlite
from tenancy.actors import tenant_db_path

log = logging.getLogger(__name__)

RUNNING, READY, DONE, FAILED = "running", "ready", "done", "failed"
STEP_RETRIES = 20  # a shard actor restarted by Ray (crash, eviction) answers again within seconds


class NoKeptCrops(Exception):
    """The tenant's faces cannot be re-embedded: no kept crops (or rejections bound to the old model)."""

    api_error = errors.NoKeptCrops


class UnknownPack(ValueError):
    api_error = errors.InvalidRequest


class ModelSwitched(Exception):
    """The tenant's model changed while this request was in flight (its vectors are of the old model)."""

    api_error = errors.ServiceUnavailable


class VectorsOfAnotherModel(ValueError):
    """Vectors embedded with another model than the tenant's (another pack): answered with the tenant's model, so
    the caller can embed again with it."""

    api_error = errors.ModelMismatch

    def __init__(self, message: str, tenant_model: str | None = None) -> None:
        super().__init__(message)
        self.tenant_model = tenant_model

    def __reduce__(self):
        return (VectorsOfAnotherModel, (str(self), self.tenant_model))

    def api_details(self) -> dict:
        return {"tenant_model": self.tenant_model} if self.tenant_model else {}


class MigrationLog:
    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS migrations (tenant_id TEXT PRIMARY KEY, pack TEXT NOT NULL,"
            " from_model TEXT NOT NULL, to_model TEXT NOT NULL, dim INTEGER NOT NULL, state TEXT NOT NULL,"
            " hold INTEGER NOT NULL, batch_size INTEGER NOT NULL, done INTEGER, total INTEGER, error TEXT,"
            " started_at REAL NOT NULL, updated_at REAL NOT NULL, crops_per_s REAL, pause_s REAL NOT NULL DEFAULT 0)")

    def start(self, tenant_id: str, pack: str, from_model: str, to_model: str, dim: int, hold: bool,
              batch_size: int, pause_s: float = 0.0) -> dict:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO migrations VALUES (?,?,?,?,?,?,?,?,NULL,NULL,NULL,?,?,NULL,?)",
                             (tenant_id, pack, from_model, to_model, dim, RUNNING, int(hold), batch_size, now, now, pause_s))
        return self.get(tenant_id)

    def update(self, tenant_id: str, **fields) -> dict:
        fields["updated_at"] = time.time()
        if "hold" in fields:
            fields["hold"] = int(fields["hold"])
        columns = ", ".join(f"{k} = ?" for k in fields)
        with self._lock, self._db:
            self._db.execute(f"UPDATE migrations SET {columns} WHERE tenant_id = ?", (*fields.values(), tenant_id))
        return self.get(tenant_id)

    def get(self, tenant_id: str) -> dict | None:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM migrations WHERE tenant_id = ?", (tenant_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.getdescription()] if row else []
        if row is None:
            return None
        out = dict(zip(names, row))
        out["hold"] = bool(out["hold"])
        return out

    def all(self) -> list[dict]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT tenant_id FROM migrations")]
        return [self.get(tenant_id) for tenant_id in ids]

    def forget(self, tenant_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM migrations WHERE tenant_id = ?", (tenant_id,))


def migrations_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "migrations.db"


class Migrations:
    """Starts, drives, resumes and reports model migrations for a TenantService. `embedders`: {pack name:
    the Embedder deployment handle serving it}."""

    def __init__(self, service, embedders: dict) -> None:
        self.service = service
        self.embedders = dict(embedders)
        self.log = MigrationLog(migrations_path(service.data_dir))
        self._tasks: dict[str, asyncio.Task] = {}
        self._models: dict[str, tuple[str, int]] = {}
        self.switching: set[str] = set()  # tenants whose switch is in flight: their vector calls are refused
        self.epochs: dict[str, int] = {}  # bumped at each switch: a call that spans one is refused

    async def model_of(self, pack: str) -> tuple[str, int]:
        if pack not in self.embedders:
            raise UnknownPack(f"no model pack named {pack!r} is served; served: {sorted(self.embedders)}")
        if pack not in self._models:
            info = await self.embedders[pack].info.remote()
            self._models[pack] = (info["model_id"], int(info["dim"]))
        return self._models[pack]

    def status(self, tenant_id: str) -> dict:
        self.service.registry.get(tenant_id)
        progress = self.log.get(tenant_id)
        if progress is None:
            raise errors.NotFound(f"tenant {tenant_id} has no model migration")
        return progress

    async def start(self, tenant_id: str, pack: str, *, batch_size: int = 64, hold: bool = False,
                    pause_s: float = 0.0, principal: str = "admin") -> dict:
        """`pause_s`: a pause between batches, leaving the CPU to live traffic on a busy deployment."""
        tenant = self.service.registry.get(tenant_id)
        target, dim = await self.model_of(pack)
        if target == tenant.model:
            raise errors.InvalidRequest(f"tenant {tenant_id} is already bound to {target} (pack {pack!r})")
        current = self.log.get(tenant_id)
        task = self._tasks.get(tenant_id)
        if current is not None and current["to_model"] == target and current["state"] in (RUNNING, READY):
            # The same migration again: `hold: false` releases one that waits for its switch.
            progress = self.log.update(tenant_id, hold=hold, batch_size=batch_size, pause_s=pause_s, state=RUNNING)
            if task is None or task.done():
                self._spawn(tenant_id)
            if not hold:
                await self.service.org_record(principal, "model.migrate", "switch-requested",
                                              {"tenant_id": tenant_id, "to": target})
            return progress
        actor = await self.service.actor(tenant)
        if current is not None and current["state"] in (RUNNING, READY):  # another target: its shadow goes
            if task is not None and not task.done():
                task.cancel()
            await actor.migration_abandon.remote()
        state = await actor.migration_state.remote(target)
        refusal = self._refusal(tenant, state)
        if refusal:
            await self.service.org_record(principal, "model.migrate", "refused", {"tenant_id": tenant_id, "to": target})
            raise NoKeptCrops(refusal)
        progress = self.log.start(tenant_id, pack, tenant.model, target, dim, hold, batch_size, pause_s)
        self.log.update(tenant_id, done=state["shadow"], total=state["faces"])
        details = {"tenant_id": tenant_id, "from": tenant.model, "to": target, "faces": state["faces"]}
        await self.service.org_record(principal, "model.migrate", "started", details)
        await self.service.tenant_audit(tenant, principal, "model.migrate", "started",
                                        {"faces": state["faces"], "dim": dim})
        self._spawn(tenant_id)
        return self.log.get(tenant_id)

    @staticmethod
    def _refusal(tenant, state: dict) -> str | None:
        if not tenant.settings.keep_enrolment_photos:
            return (f"tenant {tenant.tenant_id} does not keep enrolment photos (setting keep_enrolment_photos is "
                    "off): without the aligned face crops its faces cannot be re-embedded with another model. Turn "
                    "the setting on and re-enrol the faces, then migrate")
        if state["missing_without_crop"]:
            return (f"{state['missing_without_crop']} of tenant {tenant.tenant_id}'s {state['faces']} faces were "
                    "enrolled without a kept crop (before keep_enrolment_photos was on) and cannot be re-embedded "
                    "with another model; re-enrol or delete them, then migrate")
        if state["rejections"]:
            return (f"tenant {tenant.tenant_id} has {state['rejections']} rejections, vectors of the current model "
                    "with no crop kept, which another model cannot carry; delete them, then migrate")
        return None

    def forget(self, tenant_id: str) -> None:
        """The tenant is deleted: its migration stops and its entry goes."""
        task = self._tasks.pop(tenant_id, None)
        if task is not None and not task.done():
            task.cancel()
        self.log.forget(tenant_id)

    def _spawn(self, tenant_id: str) -> None:
        self._tasks[tenant_id] = asyncio.get_running_loop().create_task(self._run(tenant_id))

    async def resume(self) -> list[str]:
        """Carry on every migration a previous run left running (the shadow rows in the file are the progress)."""
        resumed = []
        for progress in self.log.all():
            tenant_id = progress["tenant_id"]
            if progress["state"] not in (RUNNING, READY) or (tenant_id in self._tasks and not self._tasks[tenant_id].done()):
                continue
            try:
                await self.recover_switch(self.service.registry.get(tenant_id))
            except Exception:  # deleted meanwhile
                self.log.forget(tenant_id)
                continue
            if self.log.get(tenant_id)["state"] != RUNNING:
                continue
            log.info("resuming the model migration of %s to %s", tenant_id, progress["to_model"])
            self._spawn(tenant_id)
            resumed.append(tenant_id)
        return resumed

    async def _step(self, tenant_id: str, method: str, *args, **kwargs):
        """One call on the tenant's primary shard actor, retried while Ray restarts it (a crash, an eviction)."""
        for attempt in range(STEP_RETRIES):
            tenant = self.service.registry.get(tenant_id)
            try:
                actor = await self.service.actor(tenant)
                return await getattr(actor, method).remote(*args, **kwargs)
            except RayActorError:
                if attempt == STEP_RETRIES - 1:
                    raise
                self.service.forget_handles(tenant_id)
                await asyncio.sleep(0.5)

    async def _run(self, tenant_id: str) -> None:
        progress = self.log.get(tenant_id)
        target, dim, pack = progress["to_model"], progress["dim"], progress["pack"]
        embedded, busy = 0, 0.0  # crops re-embedded, seconds spent on them (pauses excluded)
        try:
            while True:
                progress = self.log.get(tenant_id)
                if progress is None or progress["state"] not in (RUNNING, READY):
                    return
                started = time.perf_counter()
                # The actor decrypts, embeds (with the target Embedder) and seals: only counts come back here.
                batch = await self._step(tenant_id, "migration_embed", target, dim, progress["batch_size"],
                                         self.embedders[pack])
                if batch["missing_without_crop"]:
                    raise NoKeptCrops(f"{batch['missing_without_crop']} faces enrolled during the migration have no "
                                      "kept crop (keep_enrolment_photos was turned off); they cannot be re-embedded")
                if batch["embedded"]:
                    embedded += batch["embedded"]
                    busy += time.perf_counter() - started
                    state = await self._step(tenant_id, "migration_state", target)
                    self.log.update(tenant_id, done=state["shadow"], total=state["faces"],
                                    crops_per_s=round(embedded / max(busy, 1e-9), 1))
                    if progress["pause_s"]:
                        await asyncio.sleep(progress["pause_s"])
                    continue
                if progress["hold"]:
                    self.log.update(tenant_id, state=READY)
                    return  # waits for `hold: false` (start again), which spawns the driver anew
                if await self._switch(tenant_id, target, dim):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("model migration of %s failed", tenant_id)
            self.log.update(tenant_id, state=FAILED, error=f"{type(exc).__name__}: {errors.root_cause(exc)}")

    async def _switch(self, tenant_id: str, target: str, dim: int) -> bool:
        """The switch; False when faces enrolled since the last batch still need their shadow vectors."""
        self.switching.add(tenant_id)
        self.epochs[tenant_id] = self.epochs.get(tenant_id, 0) + 1
        try:
            switched = await self._step(tenant_id, "migration_switch", target, dim)
            if switched is None:
                return False
            old = self.service.registry.get(tenant_id).model
            tenant = self.service.registry.set_model(tenant_id, target, dim)
            await self.service.evict(tenant_id)  # every actor (shards too) re-activates with the new binding
        finally:
            self.switching.discard(tenant_id)
        self.log.update(tenant_id, state=DONE, done=switched, total=switched)
        await self.service.org_record("migration", "model.switch", details={"tenant_id": tenant_id, "from": old,
                                                                             "to": target, "faces": switched})
        await self.service.tenant_audit(tenant, "migration", "model.migrate", "done", {"faces": switched, "dim": dim})
        return True

    async def recover_switch(self, tenant) -> None:
        """After a crash between the file's switch and the registry's: the file says which model it holds."""
        progress = self.log.get(tenant.tenant_id)
        if progress is None or progress["state"] not in (RUNNING, READY):
            return
        bound = None
        try:
            conn = sqlite.connect(tenant_db_path(self.service.data_dir, tenant.tenant_id))
            try:
                bound = dict(conn.execute("SELECT key, value FROM meta")).get("model")
            finally:
                conn.close()
        except Exception:
            return
        if bound == progress["to_model"] and tenant.model != bound:
            log.warning("tenant %s: the file switched to %s before a restart; completing the switch", tenant.tenant_id, bound)
            self.service.registry.set_model(tenant.tenant_id, bound, progress["dim"])
            self.log.update(tenant.tenant_id, state=DONE)
