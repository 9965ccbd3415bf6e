"""HTTP and Python entry point: FastAPI routes for clients, plain methods for Serve-handle callers.

Both surfaces run the same methods, so a Python caller and an HTTP client get the same answers and the
same error codes. Orchestration only: models live in the Detector and Embedder deployments, tenants and
their faces behind the TenantRouter.
"""

import asyncio
import functools
import logging
import time

import numpy as np
import pydantic
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from ray import serve
from ray.exceptions import RayActorError, RayError
from ray.serve.handle import DeploymentHandle

import tenancy.ratelimit as ratelimit
import tenancy.registry as registry
import tenancy.service as tenant_service
import tenancy.store as store
from securegate import schemas as s
from deployments.routes import streams as stream_routes
from deployments.routes import console as console_routes
from securegate import errors, metrics
from vision import images
from vision.detector import DetectedFace
from securegate.settings import Settings
from tenancy.quality import assess
from tenancy.registry import Tenant

log = logging.getLogger("ray.serve")

api = FastAPI(title="SecureGate", version="0.1.0", description="Multi-tenant face recognition on Ray Serve.")
api.include_router(stream_routes.router)  # cameras, events, webhooks: deployments/routes/streams.py
api.include_router(console_routes.router)  # the web console at /console (static files)


# --------------------------------------------------------------------------------------- error mapping
# Domain errors of the tenancy layer → the API's stable codes. Anything unlisted is a 500.
DOMAIN_ERRORS: dict[type[Exception], type[errors.ApiError]] = {
    registry.InvalidApiKey: errors.Unauthenticated,
    registry.TenantNotFound: errors.NotFound,
    tenant_service.Forbidden: errors.Forbidden,
    tenant_service.TenantUnavailable: errors.ServiceUnavailable,
    store.NotFound: errors.NotFound,
    store.DuplicateExternalId: errors.Conflict,
    store.ModelMismatch: errors.ModelMismatch,
    store.CorruptRecord: errors.CorruptRecord,
    store.InvalidCursor: errors.InvalidRequest,
    store.InvalidMetadata: errors.InvalidRequest,
    tenant_service.ShardedCentroidSearch: errors.InvalidRequest,
    pydantic.ValidationError: errors.InvalidRequest,
    ratelimit.RateLimited: errors.RateLimited,
    RayActorError: errors.ServiceUnavailable,
}


def to_api_error(exc: BaseException) -> errors.ApiError:
    cause = errors.root_cause(exc)
    if isinstance(cause, errors.ApiError):
        return cause
    for kind, api_error in DOMAIN_ERRORS.items():
        if isinstance(cause, kind) or isinstance(exc, kind):
            details = {"face_id": cause.face_id} if isinstance(cause, store.CorruptRecord) else {}
            if isinstance(cause, ratelimit.RateLimited):
                details = {"retry_after_s": round(cause.retry_after_s, 3)}
            return api_error(str(cause).splitlines()[0] if str(cause) else api_error.code, **details)
    log.error("unhandled error: %r", exc)
    return errors.ApiError("internal error")


def api_errors(method):
    """Python callers get the same typed ApiError (with its code) that HTTP clients get as JSON; every
    call is counted by endpoint, tenant and outcome."""

    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        started = time.perf_counter()
        outcome = "ok"
        token = metrics.current_tenant.set("-")
        try:
            return await method(*args, **kwargs)
        except errors.ApiError as exc:
            outcome = exc.code
            raise
        except Exception as exc:
            mapped = to_api_error(exc)
            outcome = mapped.code
            raise mapped from None
        finally:
            metrics.requests_total().inc(tags={"endpoint": method.__name__, "tenant": metrics.current_tenant.get(), "outcome": outcome})
            metrics.request_seconds().observe(time.perf_counter() - started, tags={"endpoint": method.__name__})
            metrics.current_tenant.reset(token)

    return wrapper


def error_response(exc: errors.ApiError) -> JSONResponse:
    headers = {}
    if "retry_after_s" in exc.details:
        headers["Retry-After"] = ratelimit.retry_after_header(exc.details["retry_after_s"])
    return JSONResponse(status_code=exc.status, content=exc.body(), headers=headers)


@api.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")} for e in exc.errors()]
    return error_response(errors.InvalidRequest("request body does not match the schema", problems=problems))


@api.exception_handler(StarletteHTTPException)
async def _framework_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own refusals (a body that is not UTF-8 JSON, an unknown route or method) in our shape."""
    if isinstance(exc, _BodyTooLarge):
        return error_response(errors.PayloadTooLarge(exc.detail, max_bytes=exc.max_bytes))
    kind = {404: errors.NotFound, 405: errors.MethodNotAllowed, 413: errors.PayloadTooLarge,
            414: errors.UriTooLong}.get(exc.status_code, errors.InvalidRequest)
    return JSONResponse(status_code=exc.status_code, content=kind(str(exc.detail)).body(),
                        headers=getattr(exc, "headers", None))


@api.exception_handler(errors.ApiError)
async def _api_error(_: Request, exc: errors.ApiError) -> JSONResponse:
    return error_response(exc)


@api.exception_handler(RayError)
async def _replica_error(_: Request, exc: RayError) -> JSONResponse:
    return error_response(to_api_error(exc))


# Our URL limit (path + query), answered 414 uri_too_long. The HTTP server in Serve's proxy (uvicorn with
# httptools) refuses URLs over 65535 bytes itself, with a plain-text 400 "Invalid HTTP request received.",
# while parsing, before any ASGI code (ours or Serve's) runs, and Serve's http_options expose no parser
# setting: that one answer cannot be in our shape. Everything from here up to it is.
MAX_URL_BYTES = 8192


class BodyLimit:
    """ASGI middleware: refuses bodies over the limit from Content-Length, or while streaming when absent,
    and URLs over MAX_URL_BYTES."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = errors.PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes", max_bytes=self.max_bytes)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"")
        if url_bytes > MAX_URL_BYTES:
            return await error_response(errors.UriTooLong(
                f"the URL is {url_bytes} bytes, over the limit of {MAX_URL_BYTES}", max_bytes=MAX_URL_BYTES))(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await error_response(too_large)(scope, receive, send)


class _BodyTooLarge(StarletteHTTPException):
    """Raised from the body stream (chunked bodies declare no length). An HTTPException because FastAPI
    re-raises those from body parsing and turns any other error there into a 400; answered as 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body is over the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


def bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
        raise errors.Unauthenticated("send 'Authorization: Bearer <key>'")
    return authorization[7:].strip()


def largest(faces: list[DetectedFace]) -> DetectedFace:
    return max(faces, key=lambda f: f.area)


def model_id(model: dict) -> str:
    """What a tenant's vectors are bound to (same as ModelPack.model_id)."""
    return f"{model['name']}/{model['dim']}"


# Every status a route can answer with, documented with our error body (422 replaces FastAPI's default
# validation schema, which we never send: validation errors are 400 invalid_request).
STATELESS_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 413, 414, 422, 503)}
TENANT_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 409, 413, 414, 422, 429, 500, 503)}
ADMIN_ERRORS = {code: {"model": s.ErrorResponse} for code in (400, 401, 403, 404, 413, 414, 422, 503)}


# ------------------------------------------------------------------------------------------ deployment
# Helpers the class uses are defined above it: Serve pickles the ingress class by value when it is bound.
@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress(stream_routes.StreamRoutes):
    def __init__(self, settings: dict, detector: DeploymentHandle, embedder: DeploymentHandle,
                 tenants: DeploymentHandle, keys: DeploymentHandle, streams: DeploymentHandle | None = None) -> None:
        self.settings = Settings.model_validate(settings)
        self.detector, self.embedder, self.tenants, self.keys = detector, embedder, tenants, keys
        self.streams = streams  # StreamRouter: cameras and events (deployments/stream_api.py)
        self._model: dict | None = None
        api.add_middleware(BodyLimit, max_bytes=self.settings.limits.max_body_bytes)

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
        detector, embedder, keys = await asyncio.gather(
            self.detector.info.remote(), self.embedder.info.remote(), self.keys.ready.remote())
        if not keys:
            raise errors.NotReady("the key service cannot reach its provider")
        return {"ready": True, "detector": detector, "embedder": embedder, "keys": keys}

    # ---- admin: tenants --------------------------------------------------------------------------------
    @api_errors
    async def create_tenant(self, admin_token: str, name: str, settings: dict | None = None) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        model = await self.model_info()
        tenant, api_key = await self.tenants.create_tenant.remote(name, model_id(model), model["dim"], settings)
        return {"tenant_id": tenant["tenant_id"], "api_key": api_key}

    @api_errors
    async def list_tenants(self, admin_token: str) -> list[dict]:
        await self.tenants.check_admin.remote(admin_token)
        return await self.tenants.list_tenants.remote()

    @api_errors
    async def get_tenant(self, admin_token: str, tenant_id: str) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        return await self.tenants.get_tenant.remote(tenant_id)

    @api_errors
    async def update_tenant(self, admin_token: str, tenant_id: str, settings: dict) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        return await self.tenants.update_tenant.remote(tenant_id, settings)

    @api_errors
    async def delete_tenant(self, admin_token: str, tenant_id: str) -> None:
        await self.tenants.check_admin.remote(admin_token)
        if self.streams is not None:
            await self._streams_before_tenant_delete(tenant_id)
        await self.tenants.delete_tenant.remote(tenant_id)

    @api_errors
    async def rotate_api_key(self, admin_token: str, tenant_id: str) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        return {"api_key": await self.tenants.rotate_api_key.remote(tenant_id)}

    # ---- admin: keys -------------------------------------------------------------------------------------
    @api_errors
    async def rotate_root_key(self, admin_token: str) -> dict:
        """Re-wraps every tenant key-encryption key under a new org root key; records are not touched."""
        await self.tenants.check_admin.remote(admin_token)
        return await self.keys.rotate_root.remote()

    @api_errors
    async def rotate_tenant_key(self, admin_token: str, tenant_id: str) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        return await self.tenants.rotate_tenant_key.remote(tenant_id)

    @api_errors
    async def key_status(self, admin_token: str) -> dict:
        await self.tenants.check_admin.remote(admin_token)
        status, rotations = await asyncio.gather(self.keys.status.remote(), self.tenants.rotations.remote())
        return {**status, "rotations": rotations}

    # ---- a tenant's persons and faces (the tenant comes from the API key, never from the request) -------
    @api_errors
    async def create_person(self, api_key: str, external_id: str | None = None, metadata: dict | None = None) -> dict:
        person = s.PersonCreate(external_id=external_id, metadata=metadata or {})  # the HTTP body's bounds, for handle callers too
        tenant = await self._tenant(api_key)
        return await self._call(tenant, "create_person", person.external_id, person.metadata)

    @api_errors
    async def list_persons(self, api_key: str, limit: int = 50, cursor: str | None = None) -> dict:
        tenant = await self._tenant(api_key)
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
        faces = await self._faces(image, None)
        if face_index is None and len(faces) > 1:
            raise errors.MultipleFaces(f"the image holds {len(faces)} faces; pick one with face_index",
                                       faces=[f.summary()["bbox"] for f in faces])
        if face_index is not None and face_index >= len(faces):
            raise errors.InvalidRequest(f"face_index {face_index} is out of range: {len(faces)} face(s) found")
        face = faces[face_index or 0]
        report = assess(face.bbox, face.landmarks, face.crop, face.score, tenant.settings.quality)
        if not report.passed:
            raise errors.LowQuality("the face is not good enough to enrol", reasons=report.reasons)
        (vector,) = await self._embed([face])
        return await self._call(tenant, "add_face", person_id, vector, face.score, report.score)

    @api_errors
    async def delete_face(self, api_key: str, person_id: str, face_id: str) -> None:
        tenant = await self._tenant(api_key)
        await self._call(tenant, "delete_face", person_id, face_id)

    @api_errors
    async def search(self, api_key: str, image: bytes, threshold: float | None = None, top_k: int = 1,
                     max_faces: int | None = None) -> dict:
        """Every face in the image, searched in one batched call against the tenant's gallery."""
        tenant = await self._tenant(api_key)
        faces = await self._faces(image, max_faces)
        vectors = await self._embed(faces)
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
    async def verify_person(self, api_key: str, image: bytes, person_id: str, threshold: float | None = None) -> dict:
        """The image's largest face against an enrolled person: their faces, or their centroid (tenant setting)."""
        tenant = await self._tenant(api_key)
        (vector,) = await self._embed([largest(await self._faces(image, None))])
        scores = await self._call(tenant, "verify_person", vector, person_id, retry_reads=True)
        if scores["faces"] == 0:
            raise errors.NotFound(f"person {person_id} has no enrolled faces")
        threshold = await self._threshold(threshold, tenant)
        key = "centroid_similarity" if tenant.settings.match_on == "centroid" else "best_face_similarity"
        similarity = scores[key]
        return {"similarity": round(similarity, 6), "match": similarity >= threshold, "threshold": threshold,
                "best_face_similarity": round(scores["best_face_similarity"], 6),
                "centroid_similarity": round(scores["centroid_similarity"], 6)}

    # ================================================================================== internals
    async def _tenant(self, api_key: str) -> Tenant:
        tenant = await self.tenants.authenticate.remote(api_key, 1.0)
        metrics.current_tenant.set(tenant.tenant_id)
        metrics.current_actor.set(f"key:{registry.parse_api_key(api_key)[0]}")
        model = await self.model_info()
        if tenant.model != model_id(model):
            raise errors.ModelMismatch(
                f"tenant is bound to model {tenant.model}; this deployment serves {model_id(model)}")
        return tenant

    async def _call(self, tenant: Tenant, method: str, *args, retry_reads: bool = False):
        """A tenant index call, audited under the API key that made it."""
        return await self.tenants.call.remote(tenant, method, *args, retry_reads=retry_reads, actor=metrics.current_actor.get())

    async def _threshold(self, requested: float | None, tenant: Tenant | None) -> float:
        if requested is not None:
            return requested
        if tenant is not None and tenant.settings.default_threshold is not None:
            return tenant.settings.default_threshold
        if self.settings.verify_threshold is not None:
            return self.settings.verify_threshold
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

    async def _embed(self, faces: list[DetectedFace]) -> np.ndarray:
        return await self.embedder.embed.remote(np.stack([f.crop for f in faces]))

    # ======================================================================================= HTTP
    @api.post("/v1/detect", response_model=s.DetectResponse, responses=STATELESS_ERRORS, tags=["faces"])
    async def http_detect(self, body: s.ImageRequest) -> dict:
        return await self.detect(images.b64decode(body.image), body.max_faces)

    @api.post("/v1/embed", response_model=s.EmbedResponse, responses=STATELESS_ERRORS, tags=["faces"])
    async def http_embed(self, body: s.ImageRequest) -> dict:
        return await self.embed(images.b64decode(body.image), body.max_faces)

    @api.post("/v1/verify", response_model=s.VerifyResponse, response_model_exclude_none=True, responses=TENANT_ERRORS, tags=["faces"])
    async def http_verify(self, body: s.VerifyRequest, authorization: str | None = Header(None)) -> dict:
        if body.person_id is not None:
            return await self.verify_person(bearer(authorization), images.b64decode(body.image), body.person_id, body.threshold)
        a = images.b64decode(body.image_a, "image_a")
        b = images.b64decode(body.image_b, "image_b")
        return await self.verify(a, b, body.threshold)

    @api.post("/v1/search", response_model=s.SearchResponse, responses=TENANT_ERRORS, tags=["faces"])
    async def http_search(self, body: s.SearchRequest, authorization: str | None = Header(None)) -> dict:
        return await self.search(bearer(authorization), images.b64decode(body.image), body.threshold, body.top_k, body.max_faces)

    @api.post("/v1/persons", status_code=201, response_model=s.PersonCreated, responses=TENANT_ERRORS, tags=["persons"])
    async def http_create_person(self, body: s.PersonCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_person(bearer(authorization), body.external_id, body.metadata)

    @api.get("/v1/persons", response_model=s.PersonPage, responses=TENANT_ERRORS, tags=["persons"])
    async def http_list_persons(self, limit: int = Query(50, ge=1, le=1000), cursor: str | None = Query(None, max_length=512),
                                authorization: str | None = Header(None)) -> dict:
        return await self.list_persons(bearer(authorization), limit, cursor)

    @api.get("/v1/persons/{person_id}", response_model=s.PersonView, responses=TENANT_ERRORS, tags=["persons"])
    async def http_get_person(self, person_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.get_person(bearer(authorization), person_id)

    @api.delete("/v1/persons/{person_id}", status_code=204, responses=TENANT_ERRORS, tags=["persons"])
    async def http_delete_person(self, person_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_person(bearer(authorization), person_id)
        return Response(status_code=204)

    @api.post("/v1/persons/{person_id}/faces", status_code=201, response_model=s.FaceEnrolled, responses=TENANT_ERRORS, tags=["persons"])
    async def http_enrol_face(self, person_id: str, body: s.FaceEnrol, authorization: str | None = Header(None)) -> dict:
        return await self.enrol_face(bearer(authorization), person_id, images.b64decode(body.image), body.face_index)

    @api.delete("/v1/persons/{person_id}/faces/{face_id}", status_code=204, responses=TENANT_ERRORS, tags=["persons"])
    async def http_delete_face(self, person_id: str, face_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_face(bearer(authorization), person_id, face_id)
        return Response(status_code=204)

    @api.post("/v1/tenants", status_code=201, response_model=s.TenantCreated, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_create_tenant(self, body: s.TenantCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_tenant(bearer(authorization), body.name, body.settings)

    @api.get("/v1/tenants", response_model=list[s.TenantView], responses=ADMIN_ERRORS, tags=["admin"])
    async def http_list_tenants(self, authorization: str | None = Header(None)) -> list[dict]:
        return await self.list_tenants(bearer(authorization))

    @api.get("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_get_tenant(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.get_tenant(bearer(authorization), tenant_id)

    @api.patch("/v1/tenants/{tenant_id}", response_model=s.TenantView, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_update_tenant(self, tenant_id: str, body: s.TenantPatch, authorization: str | None = Header(None)) -> dict:
        return await self.update_tenant(bearer(authorization), tenant_id, body.settings)

    @api.delete("/v1/tenants/{tenant_id}", status_code=204, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_delete_tenant(self, tenant_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_tenant(bearer(authorization), tenant_id)
        return Response(status_code=204)

    @api.post("/v1/tenants/{tenant_id}/api-keys", status_code=201, response_model=s.ApiKeyCreated, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_rotate_api_key(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_api_key(bearer(authorization), tenant_id)

    @api.post("/v1/admin/keys/rotate-root", response_model=s.RootKeyRotation, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_rotate_root_key(self, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_root_key(bearer(authorization))

    @api.post("/v1/tenants/{tenant_id}/keys/rotate", status_code=202, response_model=s.KeyRotation, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_rotate_tenant_key(self, tenant_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.rotate_tenant_key(bearer(authorization), tenant_id)

    @api.get("/v1/admin/keys/status", response_model=s.KeyStatus, responses=ADMIN_ERRORS, tags=["admin"])
    async def http_key_status(self, authorization: str | None = Header(None)) -> dict:
        return await self.key_status(bearer(authorization))

    @api.get("/v1/audit", response_model=s.AuditPage, responses=TENANT_ERRORS, tags=["audit"])
    async def http_audit(self, since: int = Query(0, ge=0, le=s.SEQ_MAX, description="sequence number of the last event seen"),
                         limit: int = Query(100, ge=1, le=1000),
                         authorization: str | None = Header(None)) -> dict:
        return await self.audit(bearer(authorization), since, limit)

    @api.get("/v1/healthz", response_model=s.Health, tags=["health"])
    async def http_healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/readyz", response_model=s.Readiness, responses={503: {"model": s.ErrorResponse}}, tags=["health"])
    async def http_readyz(self):
        try:
            return await asyncio.wait_for(self.ready(), timeout=5.0)
        except Exception as exc:
            log.warning("not ready: %r", exc)
            return error_response(errors.NotReady("models or the key service are not ready"))

