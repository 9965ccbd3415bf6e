"""HTTP and Python entry point: the handle API (plain async methods for Serve-handle callers), and the HTTP
routes, one module per resource in deployments/routes/, that call it.

Both surfaces run the same methods, so a Python caller and an HTTP client get the same answers and the
same error codes. Orchestration only: models live in the Detector and Embedder deployments, tenants and
their faces behind the TenantRouter, cameras behind the StreamRouter. Exceptions become API errors through
the one table in securegate/errors.py, so this replica imports no tenancy module that holds an index or a
store (faiss, apsw).
"""

import asyncio

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
from deployments.api_calls import api_errors
from deployments.import_api import ImportApi
from deployments.routes.common import BodyLimit, add_error_handlers
from securegate import errors, metrics
from securegate import schemas as s
from securegate.settings import Settings
from tenancy.quality import enrolment_face
from tenancy.tenant import Tenant, parse_api_key
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


def largest(faces: list[DetectedFace]) -> DetectedFace:
    return max(faces, key=lambda f: f.area)


def admin_principal() -> str:
    """Who makes an admin call, as the org audit records it: the `admin:<key name>` set when the call was
    authorised, else the one admin token's `admin`."""
    principal = metrics.current_principal.get()
    return principal if principal.startswith("admin") else "admin"


def model_id(model: dict) -> str:
    """What a tenant's vectors are bound to (same as ModelPack.model_id)."""
    return f"{model['name']}/{model['dim']}"


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
        faces = await self._faces(image, max_faces)
        vectors = await self._embed(faces)
        model = await self.model_info()
        return {
            "model": {"name": model["name"], "dim": model["dim"]},
            "faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"], "embedding": v.tolist()}
                      for f, v in zip(faces, vectors)],
        }

    @api_errors
    async def verify(self, image_a: bytes, image_b: bytes, threshold: float | None = None) -> dict:
        """Largest face of each image; cosine similarity against the threshold (default per model pack)."""
        faces_a, faces_b = await asyncio.gather(self._faces(image_a, None, "image_a"), self._faces(image_b, None, "image_b"))
        a, b = await self._embed([largest(faces_a), largest(faces_b)])
        threshold = await self._threshold(threshold, None)
        similarity = float(np.dot(a, b))
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

    # ---- a tenant's persons and faces (the tenant comes from the API key, never from the request) -------
    @api_errors
    async def create_person(self, api_key: str, external_id: str | None = None, metadata: dict | None = None) -> dict:
        person = s.PersonCreate(external_id=external_id, metadata=metadata or {})  # the HTTP body's bounds, for handle callers too
        tenant = await self._tenant(api_key)
        return await self._call(tenant, "create_person", person.external_id, person.metadata)

    @api_errors
    async def list_persons(self, api_key: str, limit: int = 50, cursor: str | None = None, external_id: str | None = None) -> dict:
        """One page of persons in creation order; with `external_id`, the one person holding it (or none),
        found through the blind index rather than by reading pages."""
        if not 1 <= limit <= s.PAGE_LIMIT_MAX:  # the HTTP query's bounds, for handle callers too
            raise errors.InvalidRequest(f"limit must be between 1 and {s.PAGE_LIMIT_MAX}")
        if external_id is not None and cursor is not None:
            raise errors.InvalidRequest("external_id finds one person: it takes no cursor")
        tenant = await self._tenant(api_key)
        if external_id is not None:
            return await self._call(tenant, "find_person", s.PersonCreate(external_id=external_id).external_id, retry_reads=True)
        return await self._call(tenant, "list_persons", limit, cursor, retry_reads=True)

    @api_errors
    async def get_person(self, api_key: str, person_id: str) -> dict:
        tenant = await self._tenant(api_key)
        return await self._call(tenant, "get_person", person_id, retry_reads=True)

    @api_errors
    async def delete_person(self, api_key: str, person_id: str) -> None:
        tenant = await self._tenant(api_key)
        await self._call(tenant, "delete_person", person_id)
        if self.streams is not None:
            await self._streams_after_person_delete(tenant.tenant_id, person_id)

    @api_errors
    async def enrol_face(self, api_key: str, person_id: str, image: bytes, face_index: int | None = None) -> dict:
        """One face of `image` becomes a reference face of the person, if it passes the quality gates."""
        tenant = await self._tenant(api_key)
        face, report = enrolment_face(await self._faces(image, None), face_index, tenant.settings.quality)
        (vector,) = await self._embed([face], tenant)
        crop = face.crop if tenant.settings.keep_enrolment_photos else None  # kept sealed with the face
        return await self._call(tenant, "add_face", person_id, vector, face.score, report.score, crop)

    @api_errors
    async def delete_face(self, api_key: str, person_id: str, face_id: str) -> None:
        tenant = await self._tenant(api_key)
        await self._call(tenant, "delete_face", person_id, face_id)

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
        tenant = await self._tenant(api_key)
        if face_id is not None:
            return await self._call(tenant, "reject_face", person_id, face_id)
        if unknown_id is not None:
            if self.streams is None:
                raise errors.NotFound(f"unknown {unknown_id} not found")
            vectors = await self.streams.take_unknown.remote(tenant, unknown_id)
            return await self._call(tenant, "add_rejections", person_id, np.asarray(vectors, np.float32), "unknown")
        faces = await self._faces(image, None)
        if face_index is None and len(faces) > 1:
            raise errors.MultipleFaces(f"the image holds {len(faces)} faces; pick one with face_index",
                                       faces=[f.summary()["bbox"] for f in faces])
        if face_index is not None and face_index >= len(faces):
            raise errors.InvalidRequest(f"face_index {face_index} is out of range: {len(faces)} face(s) found")
        # No quality gate: the look-alike was mistaken at whatever quality the camera or photo gave.
        (vector,) = await self._embed([faces[face_index or 0]], tenant)
        return await self._call(tenant, "add_rejections", person_id, vector[None], "image")

    @api_errors
    async def list_rejections(self, api_key: str, person_id: str) -> dict:
        tenant = await self._tenant(api_key)
        return await self._call(tenant, "list_rejections", person_id, retry_reads=True)

    @api_errors
    async def delete_rejection(self, api_key: str, person_id: str, rejection_id: str) -> None:
        tenant = await self._tenant(api_key)
        await self._call(tenant, "delete_rejection", person_id, rejection_id)

    @api_errors
    async def merge_persons(self, api_key: str, person_id: str, merged_person_id: str) -> dict:
        """`merged_person_id` is the same human as `person_id`: their faces and rejections move to `person_id`,
        their camera events name `person_id`, and `merged_person_id` is deleted (404 from then on)."""
        tenant = await self._tenant(api_key)
        merged = await self._call(tenant, "merge_persons", person_id, merged_person_id)
        external_id = merged.pop("external_id", None)
        merged["events_relinked"] = 0
        if self.streams is not None:
            merged["events_relinked"] = await self.streams.person_merged.remote(
                tenant.tenant_id, merged_person_id, person_id, external_id)
        return merged

    @api_errors
    async def move_face(self, api_key: str, person_id: str, face_id: str, to_person_id: str) -> dict:
        """Face `face_id` was enrolled to the wrong person: it becomes `to_person_id`'s."""
        tenant = await self._tenant(api_key)
        return await self._call(tenant, "move_face", person_id, face_id, to_person_id)

    @api_errors
    async def search(self, api_key: str, image: bytes, threshold: float | None = None, top_k: int = 1,
                     max_faces: int | None = None) -> dict:
        """Every face in the image, searched in one batched call against the tenant's gallery."""
        tenant = await self._tenant(api_key)
        faces = await self._faces(image, max_faces)
        vectors = await self._embed(faces, tenant)
        threshold = await self._threshold(threshold, tenant)
        results = await self._call(tenant, "search", vectors, top_k, threshold,
                                                 tenant.settings.match_on, retry_reads=True)
        return {"faces": [{"bbox": f.summary()["bbox"], "score": f.summary()["score"], "matches": matches}
                          for f, matches in zip(faces, results)],
                "threshold": threshold}

    @api_errors
    async def audit(self, api_key: str, since: int = 0, limit: int = 100) -> dict:
        """The tenant's audit events after sequence number `since`, oldest first; page with `next_since`."""
        if not 0 <= since <= s.SEQ_MAX:
            raise errors.InvalidRequest(f"since must be between 0 and {s.SEQ_MAX}")
        tenant = await self._tenant(api_key)
        events = await self.tenants.audit_events.remote(tenant, since, limit)
        return {"events": events, "next_since": events[-1]["seq"] if events else since}

    @api_errors
    async def verify_audit(self, api_key: str) -> dict:
        """The caller's tenant audit chain checked against itself and its MACed checkpoints."""
        tenant = await self._tenant(api_key)
        return await self.tenants.verify_audit.remote(tenant.tenant_id)

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

    @api_errors
    async def verify_person(self, api_key: str, image: bytes, person_id: str, threshold: float | None = None) -> dict:
        """The image's largest face against an enrolled person: their faces, or their centroid (tenant setting)."""
        tenant = await self._tenant(api_key)
        (vector,) = await self._embed([largest(await self._faces(image, None))], tenant)
        scores = await self._call(tenant, "verify_person", vector, person_id, retry_reads=True)
        if scores["faces"] == 0:
            raise errors.NotFound(f"person {person_id} has no enrolled faces")
        threshold = await self._threshold(threshold, tenant)
        key = "centroid_similarity" if tenant.settings.match_on == "centroid" else "best_face_similarity"
        similarity = scores[key]
        # The search's rule: a probe at least as close to one of the person's rejections does not match them.
        rejection = scores.get("best_rejection_similarity")
        rejected = rejection is not None and similarity <= rejection
        return {"similarity": round(similarity, 6), "match": similarity >= threshold and not rejected,
                "threshold": threshold, "best_face_similarity": round(scores["best_face_similarity"], 6),
                "centroid_similarity": round(scores["centroid_similarity"], 6),
                "best_rejection_similarity": None if rejection is None else round(rejection, 6), "rejected": rejected}

    # ================================================================================== internals
    async def _tenant(self, api_key: str) -> Tenant:
        tenant = await self.tenants.authenticate.remote(api_key, 1.0)
        metrics.current_tenant.set(tenant.tenant_id)
        metrics.current_principal.set(f"key:{parse_api_key(api_key)[0]}")
        served = await self._served_models()
        if tenant.model not in served:
            raise errors.ModelMismatch(
                f"tenant is bound to model {tenant.model}; this deployment serves {', '.join(sorted(served))}")
        return tenant

    async def _served_models(self) -> dict[str, tuple[DeploymentHandle, dict]]:
        """{model id: (Embedder handle, its info)} of every pack this application serves."""
        if self._served is None:
            handles = list(self.embedders.values()) or [self.embedder]
            infos = await asyncio.gather(*(h.info.remote() for h in handles))
            self._served = {model_id(info): (handle, info) for handle, info in zip(handles, infos)}
        return self._served

    async def _call(self, tenant: Tenant, method: str, *args, retry_reads: bool = False):
        """A tenant index call, audited under the API key that made it."""
        return await self.tenants.call.remote(tenant, method, *args, retry_reads=retry_reads,
                                              principal=metrics.current_principal.get())

    async def _threshold(self, requested: float | None, tenant: Tenant | None) -> float:
        if requested is not None:
            return requested
        if tenant is not None and tenant.settings.default_threshold is not None:
            return tenant.settings.default_threshold
        if self.settings.verify_threshold is not None:
            return self.settings.verify_threshold
        if tenant is not None:  # the default of the model the tenant is bound to
            return float((await self._served_models())[tenant.model][1]["default_threshold"])
        return float((await self.model_info())["default_threshold"])

    async def _faces(self, image: bytes, max_faces: int | None, field: str = "image") -> list[DetectedFace]:
        # The header check runs here, before the bytes travel to a detector replica.
        try:
            images.probe(image, self.settings.limits.max_image_pixels)
        except errors.ApiError as exc:
            exc.details.setdefault("field", field)
            raise
        faces = await self.detector.detect.remote(image, max_faces)
        if not faces:
            raise errors.NoFace(f"no face found in {field}", field=field)
        return faces

    async def _embed(self, faces: list[DetectedFace], tenant: Tenant | None = None) -> np.ndarray:
        """Aligned crops → vectors of the tenant's model (of the default pack without a tenant)."""
        embedder = (await self._served_models())[tenant.model][0] if tenant is not None else self.embedder
        return await embedder.embed.remote(np.stack([f.crop for f in faces]))
