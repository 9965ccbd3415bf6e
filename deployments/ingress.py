"""HTTP and Python entry point: FastAPI routes for clients, plain methods for Serve-handle callers.

Both surfaces run the same methods (`detect`, `embed`, `verify`), so a Python caller and an HTTP client
get the same answers and the same error codes. Orchestration only: models live in the Detector and
Embedder deployments, faces in the tenancy layer.
"""


import asyncio
import logging

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle

from securegate import errors, images
from securegate.models import DetectedFace
from securegate.settings import Settings

log = logging.getLogger("ray.serve")

api = FastAPI(title="SecureGate", version="0.1.0", description="Multi-tenant face recognition on Ray Serve.")


# ---------------------------------------------------------------------------------------------- schemas
class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ImageRequest(BaseModel):
    image: str = Field(..., description="base64 of the image file's bytes (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    max_faces: int | None = Field(None, ge=1, le=1000)


class VerifyRequest(BaseModel):
    image_a: str = Field(..., description="base64 image; its largest face is compared")
    image_b: str = Field(..., description="base64 image; its largest face is compared")
    threshold: float | None = Field(None, ge=-1, le=1, description="cosine accept threshold; default per model pack")


class Face(BaseModel):
    bbox: list[float]
    landmarks: list[list[float]]
    score: float


class DetectResponse(BaseModel):
    faces: list[Face]


class ModelInfo(BaseModel):
    name: str
    dim: int


class EmbeddedFace(BaseModel):
    bbox: list[float]
    score: float
    embedding: list[float]


class EmbedResponse(BaseModel):
    model: ModelInfo
    faces: list[EmbeddedFace]


class VerifyResponse(BaseModel):
    similarity: float
    match: bool
    threshold: float


ERRORS = {
    400: {"model": ErrorResponse, "description": "invalid_image / invalid_request"},
    413: {"model": ErrorResponse, "description": "payload_too_large / image_too_large"},
    422: {"model": ErrorResponse, "description": "no_face"},
}


# --------------------------------------------------------------------------------------- error mapping
def error_response(exc: errors.ApiError) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content=exc.body())


@api.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")} for e in exc.errors()]
    return error_response(errors.InvalidRequest("request body does not match the schema", problems=problems))


@api.exception_handler(errors.ApiError)
async def _api_error(_: Request, exc: errors.ApiError) -> JSONResponse:
    return error_response(exc)


@api.exception_handler(RayError)
async def _replica_error(_: Request, exc: RayError) -> JSONResponse:
    """A deployment raised: its ApiError keeps its code; anything else is a 500 that we log."""
    cause = errors.root_cause(exc)
    if isinstance(cause, errors.ApiError):
        return error_response(cause)
    log.error("dependency failed: %r", exc)
    return error_response(errors.ApiError("internal error"))


class BodyLimit:
    """ASGI middleware: refuses bodies over the limit from Content-Length, or while streaming when absent."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = errors.PayloadTooLarge(f"request body is over the limit of {self.max_bytes} bytes", max_bytes=self.max_bytes)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await error_response(too_large)(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _BodyTooLarge:
            await error_response(too_large)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


# ------------------------------------------------------------------------------------------ deployment
@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.5})
@serve.ingress(api)
class Ingress:
    def __init__(self, settings: dict, detector: DeploymentHandle, embedder: DeploymentHandle) -> None:
        self.settings = Settings.model_validate(settings)
        self.detector = detector
        self.embedder = embedder
        self._model: dict | None = None
        api.add_middleware(BodyLimit, max_bytes=self.settings.limits.max_body_bytes)

    # ---- Python API (Serve handle callers) -----------------------------------------------------------
    async def model_info(self) -> dict:
        if self._model is None:
            self._model = await self.embedder.info.remote()
        return self._model

    async def detect(self, image: bytes, max_faces: int | None = None) -> dict:
        faces = await self._faces(image, max_faces)
        return {"faces": [f.summary() for f in faces]}

    async def embed(self, image: bytes, max_faces: int | None = None) -> dict:
        faces = await self._faces(image, max_faces)
        vectors = await self._embed(faces)
        model = await self.model_info()
        return {
            "model": {"name": model["name"], "dim": model["dim"]},
            "faces": [
                {"bbox": f.summary()["bbox"], "score": f.summary()["score"], "embedding": v.tolist()}
                for f, v in zip(faces, vectors)
            ],
        }

    async def verify(self, image_a: bytes, image_b: bytes, threshold: float | None = None) -> dict:
        """Largest face of each image; cosine similarity against the threshold (default per model pack)."""
        faces_a, faces_b = await asyncio.gather(self._faces(image_a, None, "image_a"), self._faces(image_b, None, "image_b"))
        largest = [max(faces_a, key=lambda f: f.area), max(faces_b, key=lambda f: f.area)]
        a, b = await self._embed(largest)
        if threshold is None:
            threshold = await self.default_threshold()
        similarity = float(np.dot(a, b))
        return {"similarity": round(similarity, 6), "match": similarity >= threshold, "threshold": threshold}

    async def default_threshold(self) -> float:
        if self.settings.verify_threshold is not None:
            return self.settings.verify_threshold
        return float((await self.model_info())["default_threshold"])

    async def ready(self) -> dict:
        detector, embedder = await asyncio.gather(self.detector.info.remote(), self.embedder.info.remote())
        return {"ready": True, "detector": detector, "embedder": embedder}

    # ---- internals -----------------------------------------------------------------------------------
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

    # ---- HTTP ----------------------------------------------------------------------------------------
    @api.post("/v1/detect", response_model=DetectResponse, responses=ERRORS)
    async def http_detect(self, body: ImageRequest) -> dict:
        return await self.detect(images.b64decode(body.image), body.max_faces)

    @api.post("/v1/embed", response_model=EmbedResponse, responses=ERRORS)
    async def http_embed(self, body: ImageRequest) -> dict:
        return await self.embed(images.b64decode(body.image), body.max_faces)

    @api.post("/v1/verify", response_model=VerifyResponse, responses=ERRORS)
    async def http_verify(self, body: VerifyRequest) -> dict:
        a = images.b64decode(body.image_a, "image_a")
        b = images.b64decode(body.image_b, "image_b")
        return await self.verify(a, b, body.threshold)

    @api.get("/v1/healthz")
    async def http_healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/v1/readyz", responses={503: {"model": ErrorResponse}})
    async def http_readyz(self):
        try:
            return await asyncio.wait_for(self.ready(), timeout=5.0)
        except Exception as exc:
            log.warning("not ready: %r", exc)
            return error_response(errors.NotReady("models are not loaded yet"))
