"""HTTP for faces without a gallery (detect, embed, verify two images) and against a tenant's gallery (verify
a person, search). Thin wrappers over the replica's FaceApi (deployments/face_api.py). Detect, embed and search
take the image raw or as base64 in JSON (deployments/routes/uploads.py)."""

from fastapi import APIRouter, Header, Request

from deployments.face_api import FaceApi
from deployments.routes.common import STATELESS_ERRORS, TENANT_ERRORS, bearer, collaborator
from deployments.routes.uploads import image_upload, openapi_forms
from securegate import schemas as s
from vision import images

router = APIRouter(tags=["faces"])
UPLOAD_ERRORS = {415: {"model": s.ErrorResponse}}


Faces = collaborator("faces", FaceApi)


@router.post("/v1/detect", response_model=s.DetectResponse, responses={**STATELESS_ERRORS, **UPLOAD_ERRORS},
             openapi_extra=openapi_forms(s.ImageRequest, s.ImageOptions))
async def http_detect(faces: Faces, request: Request) -> dict:
    image, options = await image_upload(request, s.ImageRequest, s.ImageOptions)
    return await faces.detect(image, options.max_faces)


@router.post("/v1/embed", response_model=s.EmbedResponse, responses={**STATELESS_ERRORS, **UPLOAD_ERRORS},
             openapi_extra=openapi_forms(s.ImageRequest, s.ImageOptions))
async def http_embed(faces: Faces, request: Request) -> dict:
    image, options = await image_upload(request, s.ImageRequest, s.ImageOptions)
    return await faces.embed(image, options.max_faces)


@router.post("/v1/verify", response_model=s.VerifyResponse, response_model_exclude_none=True, responses=TENANT_ERRORS)
async def http_verify(faces: Faces, body: s.VerifyRequest, authorization: str | None = Header(None)) -> dict:
    if body.person_id is not None:
        return await faces.verify_person(bearer(authorization), images.b64decode(body.image), body.person_id, body.threshold)
    a = images.b64decode(body.image_a, "image_a")
    b = images.b64decode(body.image_b, "image_b")
    return await faces.verify(a, b, body.threshold)


@router.post("/v1/search", response_model=s.SearchResponse, responses={**TENANT_ERRORS, **UPLOAD_ERRORS},
             openapi_extra=openapi_forms(s.SearchRequest, s.SearchOptions))
async def http_search(faces: Faces, request: Request, authorization: str | None = Header(None)) -> dict:
    image, options = await image_upload(request, s.SearchRequest, s.SearchOptions)
    return await faces.search(bearer(authorization), image, options.threshold, options.top_k, options.max_faces)
