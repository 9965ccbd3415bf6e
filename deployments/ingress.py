"""HTTP and Python entry point: the handle API (plain async methods for Serve-handle callers), and the HTTP
routes, one module per resource in deployments/routes/, that call it.

Both surfaces run the same methods, so a Python caller and an HTTP client get the same answers and the
same error codes. Orchestration only: models live in the Detector and Embedder deployments, tenants and
their faces behind the TenantRouter, cameras behind the StreamRouter. Exceptions become API errors through
the one table in securegate/errors.py, so this replica imports no tenancy module that holds an index or a
store (faiss, apsw).
"""

import asyncio
import dataclasses

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.routes import admin as admin_routes
from deployments.routes import admin_keys as admin_key_routes
from deployments.routes import audit as audit_routes
from deployments.routes import console as console_routes
from deployments.routes import faces as face_routes
from deployments.routes import health as health_routes
from deployments.routes import persons as person_routes
from deployments.routes import streams as stream_routes
from deployments.admission import LatencyBudget
from deployments.api_calls import api_errors
from deployments.import_api import ImportApi
from deployments.routes.common import BodyLimit, add_error_handlers
from deployments.tenant_models import TenantModels
from securegate import errors, metrics
from securegate import schemas as s
from securegate.settings import Settings
from tenancy import operations as op
from tenancy.quality import chosen_face
from tenancy.tenant import Tenant, match_threshold, parse_api_key
from vision import images
from vision.detector import DetectedFace

api = FastAPI(title="SecureGate", version="0.1.0", description="Multi-tenant face recognition on Ray Serve.")
api.include_router(stream_routes.router)  # cameras, events, webhooks
api.include_router(console_routes.router)  # the web console at /console (static files)
api.include_router(face_routes.router)  # detect, embed, verify, search
api.include_router(person_routes.router)  # a tenant's persons and faces
api.include_router(admin_routes.router)  # tenants, API keys, the key hierarchy
api.include_router(admin_key_routes.router)  # admin keys and their scopes
api.include_router(audit_routes.router)  # a tenant's audit log
api.include_router(health_routes.router)  # healthz, readyz
add_error_handlers(api)


def admin_principal() -> str:
    """Who makes an admin call, as the org audit records it: the `admin:<key name>` set when the call was
    authorised, else the one admin token's `admin`."""
    principal = metrics.current_principal.get()
    return principal if principal.startswith("admin") else "admin"


def model_id(model: dict) -> str:
    """What a tenant's vectors are bound to: an Embedder's `info()` carries its pack's ModelPack.model_id."""
    return model["model_id"]


def answered(answer: op.Answer, **more) -> dict:
    """A router's typed answer as the API's JSON: its fields, without who answered (tenant id, model)."""
    body = dataclasses.asdict(answer)
    del body["tenant_id"], body["model"]
    return {**body, **more}


# ------------------------------------------------------------------------------------------ deployment
# Helpers the class uses are defined above it: Serve pickles the ingress class by value when it is bound.
@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress(face_routes.FaceRoutes, person_routes.PersonRoutes, admin_routes.AdminRoutes, audit_routes.AuditRoutes,
              health_routes.HealthRoutes, stream_routes.StreamRoutes, ImportApi, admin_key_routes.AdminKeyRoutes):
    def __init__(self, settings: dict, detector: DeploymentHandle, embedder: DeploymentHandle,
                 tenants: DeploymentHandle, keys: DeploymentHandle, streams: DeploymentHandle | None = None,
                 embedders: dict[str, DeploymentHandle] | None = None) -> None:
        self.settings = Settings.model_validate(settings)
        self.detector, self.embedder, self.tenants, self.keys = detector, embedder, tenants, keys
        self.streams = streams  # StreamRouter: cameras and events (deployments/stream_api.py)
        self._model: dict | None = None
        # Every pack served, by name (settings `packs`; `embedder` is the default pack's): a tenant's crops go
        # to the Embedder of the model it is bound to (after a model migration, not the default one).
        self.embedders = dict(embedders or {})
        self._served: dict[str, tuple[DeploymentHandle, dict]] | None = None
        self.models = TenantModels(self._packs)  # which model each key's tenant is bound to (a hint)
        self.admission = LatencyBudget(self.settings.admission.latency_budget_s)  # images this replica sends

    def __serve_build_asgi_app__(self):
        """Serve calls this after the constructor for the app this replica serves: its own copy of `api`, frozen
        when the class was decorated (so `api` itself is not it), given the body limit of these settings."""
        self.app.add_middleware(BodyLimit, max_bytes=self.settings.limits.max_body_bytes)
        return self.app

    # =================================================================== Python API (Serve handle callers)
    async def model_info(self) -> dict:
        if self._model is None:
            self._model = await self.embedder.info.remote()
        return self._model

    @api_errors
    async def detect(self, image: bytes, max_faces: int | None = None) -> dict:
        faces = await self._faces(image, max_faces)
        return {"faces": [f.summary() for f in faces]}

    @api_errors
    async def embed(self, image: bytes, max_faces: int | None = None) -> dict:
        model = await self.model_info()
        faces = await self._faces(image, max_faces, embed_with=model_id(model))
        return {
            "model": {"name": model["name"], "dim": model["dim"]},
            "faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"], "embedding": f.vector.tolist()}
                      for f in faces],
        }

    @api_errors
    async def verify(self, image_a: bytes, image_b: bytes, threshold: float | None = None) -> dict:
        """Largest face of each image; cosine similarity against the threshold (default per model pack)."""
        model = await self.model_info()
        (a,), (b,) = await asyncio.gather(self._faces(image_a, None, "image_a", embed_with=model_id(model), largest=True),
                                          self._faces(image_b, None, "image_b", embed_with=model_id(model), largest=True))
        async def model_default() -> float:
            return float(model["default_threshold"])

        threshold = await match_threshold(threshold, None, self.settings.verify_threshold, model_default)
        similarity = float(np.dot(a.vector, b.vector))
        return {"similarity": round(similarity, 6), "match": similarity >= threshold, "threshold": threshold}

    @api_errors
    async def ready(self) -> dict:
        detector, embedder, keys, storage = await asyncio.gather(
            self.detector.info.remote(), self.embedder.info.remote(), self.keys.ready.remote(),
            self.tenants.storage.remote())
        if not keys:
            raise errors.NotReady("the key service cannot reach its provider")
        if not storage["writable"]:
            raise errors.NotReady(f"{errors.DISK_FULL_MESSAGE} ({storage['free_bytes']} bytes free)",
                                  cause=errors.InsufficientStorage.code, free_bytes=storage["free_bytes"])
        return {"ready": True, "detector": detector, "embedder": embedder, "keys": keys, "storage": storage}

    # ---- admin: tenants --------------------------------------------------------------------------------
    @api_errors
    async def create_tenant(self, admin_token: str, name: str, settings: dict | None = None) -> dict:
        await self._admin(admin_token, "create_tenant")
        model = await self.model_info()
        tenant, api_key = await self.tenants.create_tenant.remote(name, model_id(model), model["dim"], settings,
                                                                  principal=admin_principal())
        return {"tenant_id": tenant["tenant_id"], "api_key": api_key}

    @api_errors
    async def list_tenants(self, admin_token: str) -> list[dict]:
        await self._admin(admin_token, "list_tenants")
        return await self.tenants.list_tenants.remote()

    @api_errors
    async def get_tenant(self, admin_token: str, tenant_id: str) -> dict:
        await self._admin(admin_token, "get_tenant", tenant_id=tenant_id)
        return await self.tenants.get_tenant.remote(tenant_id)

    @api_errors
    async def tenant_placement(self, admin_token: str, tenant_id: str) -> dict:
        """The tenant, and where each of its index (shard) actors runs now: state, node, process."""
        await self._admin(admin_token, "tenant_placement", tenant_id=tenant_id)
        return await self.tenants.tenant_placement.remote(tenant_id)

    @api_errors
    async def update_tenant(self, admin_token: str, tenant_id: str, settings: dict) -> dict:
        await self._admin(admin_token, "update_tenant")
        return await self.tenants.update_tenant.remote(tenant_id, settings, principal=admin_principal())

    @api_errors
    async def delete_tenant(self, admin_token: str, tenant_id: str) -> None:
        await self._admin(admin_token, "delete_tenant")
        if self.streams is not None:
            await self._streams_before_tenant_delete(tenant_id)
        await self.tenants.delete_tenant.remote(tenant_id, principal=admin_principal())

    @api_errors
    async def rotate_api_key(self, admin_token: str, tenant_id: str) -> dict:
        await self._admin(admin_token, "rotate_api_key")
        return {"api_key": await self.tenants.rotate_api_key.remote(tenant_id, principal=admin_principal())}

    # ---- admin: keys -------------------------------------------------------------------------------------
    @api_errors
    async def rotate_root_key(self, admin_token: str) -> dict:
        """Re-wraps every tenant key-encryption key under a new org root key; records are not touched."""
        await self._admin(admin_token, "rotate_root_key")
        return await self.tenants.rotate_root_key.remote(principal=admin_principal())  # recorded in the org audit

    @api_errors
    async def rotate_tenant_key(self, admin_token: str, tenant_id: str) -> dict:
        await self._admin(admin_token, "rotate_tenant_key")
        if self.streams is not None:
            return await self._streams_around_key_rotation(
                tenant_id, lambda: self.tenants.rotate_tenant_key.remote(tenant_id, principal=admin_principal()))
        return await self.tenants.rotate_tenant_key.remote(tenant_id, principal=admin_principal())

    # ---- admin: model migration (tenancy/migration.py) -------------------------------------------------------
    @api_errors
    async def migrate_tenant(self, admin_token: str, tenant_id: str, to: str, batch_size: int = 64,
                             hold: bool = False, pause_s: float = 0.0) -> dict:
        """Re-embed the tenant's kept crops with pack `to` into a shadow index, then switch (unless `hold`)."""
        s.MigrationStart(to=to, batch_size=batch_size, hold=hold, pause_s=pause_s)  # the HTTP bounds, for handle callers too
        await self._admin(admin_token, "migrate_tenant")
        return await self.tenants.migrate.remote(tenant_id, to, batch_size, hold, pause_s, principal=admin_principal())

    @api_errors
    async def migration_status(self, admin_token: str, tenant_id: str) -> dict:
        await self._admin(admin_token, "migration_status", tenant_id=tenant_id)
        return await self.tenants.migration.remote(tenant_id)

    @api_errors
    async def key_status(self, admin_token: str) -> dict:
        await self._admin(admin_token, "key_status")
        status, rotations = await asyncio.gather(self.keys.status.remote(), self.tenants.rotations.remote())
        return {**status, "rotations": rotations}

    # ---- a tenant's gallery: one TenantRouter call each, which authenticates the key (tenancy/operations.py) ------
    @api_errors
    async def create_person(self, api_key: str, external_id: str | None = None, metadata: dict | None = None) -> dict:
        person = s.PersonCreate(external_id=external_id, metadata=metadata or {})  # the HTTP body's bounds, for handle callers too
        return self._answer(api_key, await self.tenants.create_person.remote(
            op.CreatePerson(op.ApiKeyCaller(api_key), person.external_id, person.metadata)))

    @api_errors
    async def list_persons(self, api_key: str, limit: int = 50, cursor: str | None = None, external_id: str | None = None) -> dict:
        """One page of persons in creation order; with `external_id`, the one person holding it (or none),
        found through the blind index rather than by reading pages."""
        if not 1 <= limit <= s.PAGE_LIMIT_MAX:  # the HTTP query's bounds, for handle callers too
            raise errors.InvalidRequest(f"limit must be between 1 and {s.PAGE_LIMIT_MAX}")
        if external_id is not None and cursor is not None:
            raise errors.InvalidRequest("external_id finds one person: it takes no cursor")
        caller = op.ApiKeyCaller(api_key)
        if external_id is not None:
            external_id = s.PersonCreate(external_id=external_id).external_id  # the HTTP query's bounds, for handle callers too
            return self._answer(api_key, await self.tenants.find_person.remote(op.FindPerson(caller, external_id)))
        return self._answer(api_key, await self.tenants.list_persons.remote(op.ListPersons(caller, limit, cursor)))

    @api_errors
    async def get_person(self, api_key: str, person_id: str) -> dict:
        return self._answer(api_key, await self.tenants.get_person.remote(op.GetPerson(op.ApiKeyCaller(api_key), person_id)))

    @api_errors
    async def delete_person(self, api_key: str, person_id: str) -> None:
        done = await self.tenants.delete_person.remote(op.DeletePerson(op.ApiKeyCaller(api_key), person_id))
        self._answer(api_key, done)
        if self.streams is not None:
            await self._streams_after_person_delete(done.tenant_id, person_id)

    @api_errors
    async def enrol_face(self, api_key: str, person_id: str, image: bytes, face_index: int | None = None) -> dict:
        """One face of `image` becomes a reference face of the person, if it passes the tenant's quality gates."""
        async def attempt(model: str) -> op.FaceEnrolled:
            face = chosen_face(await self._faces(image, None, embed_with=model, crops=True), face_index)
            return await self.tenants.enrol_face.remote(op.EnrolFace(op.ApiKeyCaller(api_key), person_id, face, model))

        return self._answer(api_key, await self.models.run(api_key, attempt))

    @api_errors
    async def delete_face(self, api_key: str, person_id: str, face_id: str) -> None:
        self._answer(api_key, await self.tenants.delete_face.remote(op.DeleteFace(op.ApiKeyCaller(api_key), person_id, face_id)))

    # ---- corrections: "not this person", merge, move ------------------------------------------------------
    @api_errors
    async def reject(self, api_key: str, person_id: str, image: bytes | None = None, face_index: int | None = None,
                     face_id: str | None = None, unknown_id: str | None = None) -> dict:
        """"Not this person": a negative example of the person, from one of `image` (its face, or the one
        `face_index` picks), `face_id` (an enrolled face of another person of this tenant) or `unknown_id` (an
        anonymous id of the camera events: each of its kept samples). Sealed like a face; a later probe closer to
        one of the person's rejections than to all of their faces does not match them. A `person_seen` event
        keeps no face vector (only who and how similar), so a rejection cannot be made from one: use the
        image, or the unknown's id."""
        given = [name for name, value in (("image", image), ("face_id", face_id), ("unknown_id", unknown_id)) if value is not None]
        if len(given) != 1:
            raise errors.InvalidRequest("give exactly one of image, face_id or unknown_id")
        caller = op.ApiKeyCaller(api_key)
        if face_id is not None:
            return self._answer(api_key, await self.tenants.reject_face.remote(op.RejectFace(caller, person_id, face_id)))
        if unknown_id is not None:
            if self.streams is None:
                raise errors.NotFound(f"unknown {unknown_id} not found")
            tenant = await self._tenant(api_key)  # the unknown's samples are the StreamRouter's, by tenant
            vectors = await self.streams.take_unknown.remote(tenant, unknown_id)  # refused when of another model
            internal = op.InternalCaller(tenant.tenant_id, caller.principal)
            return self._answer(api_key, await self.tenants.add_rejections.remote(op.AddRejections(
                internal, person_id, np.asarray(vectors, np.float32), tenant.model, "unknown")))

        async def attempt(model: str) -> op.RejectionsAdded:
            # No quality gate: the look-alike was mistaken at whatever quality the camera or photo gave.
            face = chosen_face(await self._faces(image, None, embed_with=model), face_index)
            return await self.tenants.add_rejections.remote(op.AddRejections(caller, person_id, face.vector[None], model, "image"))

        return self._answer(api_key, await self.models.run(api_key, attempt))

    @api_errors
    async def list_rejections(self, api_key: str, person_id: str) -> dict:
        return self._answer(api_key, await self.tenants.list_rejections.remote(op.ListRejections(op.ApiKeyCaller(api_key), person_id)))

    @api_errors
    async def delete_rejection(self, api_key: str, person_id: str, rejection_id: str) -> None:
        self._answer(api_key, await self.tenants.delete_rejection.remote(
            op.DeleteRejection(op.ApiKeyCaller(api_key), person_id, rejection_id)))

    @api_errors
    async def merge_persons(self, api_key: str, person_id: str, merged_person_id: str) -> dict:
        """`merged_person_id` is the same human as `person_id`: their faces and rejections move to `person_id`,
        their camera events name `person_id`, and `merged_person_id` is deleted (404 from then on)."""
        merged = await self.tenants.merge_persons.remote(op.MergePersons(op.ApiKeyCaller(api_key), person_id, merged_person_id))
        relinked = 0
        if self.streams is not None:
            relinked = await self.streams.person_merged.remote(merged.tenant_id, merged_person_id, person_id, merged.external_id)
        body = self._answer(api_key, merged, events_relinked=relinked)
        del body["external_id"]
        return body

    @api_errors
    async def move_face(self, api_key: str, person_id: str, face_id: str, to_person_id: str) -> dict:
        """Face `face_id` was enrolled to the wrong person: it becomes `to_person_id`'s."""
        return self._answer(api_key, await self.tenants.move_face.remote(
            op.MoveFace(op.ApiKeyCaller(api_key), person_id, face_id, to_person_id)))

    @api_errors
    async def search(self, api_key: str, image: bytes, threshold: float | None = None, top_k: int = 1,
                     max_faces: int | None = None) -> dict:
        """Every face in the image, searched in one batched call against the tenant's gallery."""
        async def attempt(model: str) -> tuple[list[DetectedFace], op.SearchAnswer]:
            faces = await self._faces(image, max_faces, embed_with=model)
            vectors = np.stack([f.vector for f in faces])
            return faces, await self.tenants.search.remote(op.Search(op.ApiKeyCaller(api_key), vectors, model, top_k, threshold))

        faces, answer = await self.models.run(api_key, attempt)
        self._answer(api_key, answer)
        return {"faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"],
                           "matches": [dataclasses.asdict(m) for m in matches]} for f, matches in zip(faces, answer.faces)],
                "threshold": answer.threshold}

    @api_errors
    async def verify_person(self, api_key: str, image: bytes, person_id: str, threshold: float | None = None) -> dict:
        """The image's largest face against an enrolled person: their faces, or their centroid (tenant setting)."""
        async def attempt(model: str) -> op.Verification:
            (face,) = await self._faces(image, None, embed_with=model, largest=True)
            return await self.tenants.verify_person.remote(op.VerifyPerson(op.ApiKeyCaller(api_key), face.vector, model,
                                                                           person_id, threshold))

        return self._answer(api_key, await self.models.run(api_key, attempt))

    @api_errors
    async def audit(self, api_key: str, since: int = 0, limit: int = 100) -> dict:
        """The tenant's audit events after sequence number `since`, oldest first; page with `next_since`."""
        if not 0 <= since <= s.SEQ_MAX:
            raise errors.InvalidRequest(f"since must be between 0 and {s.SEQ_MAX}")
        page = await self.tenants.audit_events.remote(op.AuditEvents(op.ApiKeyCaller(api_key), since, limit))
        return self._answer(api_key, page, next_since=page.events[-1]["seq"] if page.events else since)

    @api_errors
    async def verify_audit(self, api_key: str) -> dict:
        """The caller's tenant audit chain checked against itself and its MACed checkpoints."""
        verified = await self.tenants.verify_tenant_audit.remote(op.VerifyAudit(op.ApiKeyCaller(api_key)))
        self._answer(api_key, verified)
        return verified.result

    @api_errors
    async def admin_verify_audit(self, admin_token: str, tenant_id: str | None = None) -> dict:
        """A tenant's audit chain, or (None) the org audit's, checked."""
        await self._admin(admin_token, "admin_verify_audit", tenant_id=tenant_id)
        return await self.tenants.verify_audit.remote(tenant_id)

    @api_errors
    async def org_audit(self, admin_token: str, since: int = 0, limit: int = 100) -> dict:
        """The org audit (admin actions, key rotations, erasure receipts) after `since`, oldest first."""
        if not 0 <= since <= s.SEQ_MAX:
            raise errors.InvalidRequest(f"since must be between 0 and {s.SEQ_MAX}")
        await self._admin(admin_token, "org_audit")
        events = await self.tenants.org_audit_events.remote(since, limit)
        return {"events": events, "next_since": events[-1]["seq"] if events else since}

    @api_errors
    async def erasure_receipt(self, admin_token: str, tenant_id: str) -> dict:
        """A deleted tenant's erasure receipt, signed with the key provider's public-key signature."""
        await self._admin(admin_token, "erasure_receipt", tenant_id=tenant_id)
        return await self.tenants.erasure_receipt.remote(tenant_id)

    @api_errors
    async def receipt_keys(self) -> dict:
        """The public keys that check erasure receipts (no credential: they are published)."""
        return {"keys": await self.tenants.signing_keys.remote()}

    # ================================================================================== internals
    async def _tenant(self, api_key: str) -> Tenant:
        """The key's tenant, for operations of other deployments (cameras, events): one rate-limit token."""
        tenant = await self.tenants.authenticate.remote(api_key, 1.0)
        metrics.current_tenant.set(tenant.tenant_id)
        metrics.current_principal.set(f"key:{parse_api_key(api_key)[0]}")
        return tenant

    def _answer(self, api_key: str, answer: op.Answer, **more) -> dict:
        """The router's answer as JSON; who answered labels the request's metrics and the key's next embedding."""
        metrics.current_tenant.set(answer.tenant_id)
        self.models.learn(api_key, answer.tenant_id, answer.model)
        return answered(answer, **more)

    async def _packs(self) -> tuple[str, set[str]]:
        return model_id(await self.model_info()), set(await self._served_models())

    async def _served_models(self) -> dict[str, tuple[DeploymentHandle, dict]]:
        """{model id: (Embedder handle, its info)} of every pack this application serves."""
        if self._served is None:
            handles = list(self.embedders.values()) or [self.embedder]
            infos = await asyncio.gather(*(h.info.remote() for h in handles))
            self._served = {model_id(info): (handle, info) for handle, info in zip(handles, infos)}
        return self._served

    async def _faces(self, image: bytes, max_faces: int | None, field: str = "image", *, embed_with: str | None = None,
                     largest: bool = False, crops: bool = False) -> list[DetectedFace]:
        """The image's faces from the Detector, embedded with model `embed_with` (it hands the crops to that
        model's Embedder itself); the largest only with `largest`; with their aligned crops with `crops`."""
        # The header check runs here, before the bytes travel to a detector replica.
        try:
            images.probe(image, self.settings.limits.max_image_pixels)
        except errors.ApiError as exc:
            exc.details.setdefault("field", field)
            raise
        self.admission.admit()  # 503 overloaded when its expected wait would pass the latency budget
        try:
            faces = await self.detector.detect.remote(image, max_faces, embed_with=embed_with, largest=largest, crops=crops)
        finally:
            self.admission.done()
        if not faces:
            raise errors.NoFace(f"no face found in {field}", field=field)
        return faces
