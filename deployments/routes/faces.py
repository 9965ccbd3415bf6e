"""HTTP for faces without a gallery (detect, embed, verify two images) and against a tenant's gallery (verify
a person, search). Thin wrappers over the replica's FaceApi (deployments/face_api.py)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from deployments.face_api import FaceApi
from deployments.routes.common import STATELESS_ERRORS, TENANT_ERRORS, bearer
from securegate import schemas as s
from vision import images

router = APIRouter(tags=["faces"])


def _faces(request: Request) -> FaceApi:
    return request.app.state.faces  # the replica's collaborator (deployments/routes/app.py)


Faces = Annotated[FaceApi, Depends(_faces)]


@router.post("/v1/detect", response_model=s.DetectResponse, responses=STATELESS_ERRORS)
async def http_detect(faces: Faces, body: s.ImageRequest) -> dict:
    return await faces.detect(images.b64decode(body.image), body.max_faces)


@router.post("/v1/embed", response_model=s.EmbedResponse, responses=STATELESS_ERRORS)
async def http_embed(faces: Faces, body: s.ImageRequest) -> dict:
    return await faces.embed(images.b64decode(body.image), body.max_faces)


@router.post("/v1/verify", response_model=s.VerifyResponse, response_model_exclude_none=True, responses=TENANT_ERRORS)
async def http_verify(faces: Faces, body: s.VerifyRequest, authorization: str | None = Header(None)) -> dict:
    if body.person_id is not None:
        return await faces.verify_person(bearer(authorization), images.b64decode(body.image), body.person_id, body.threshold)
    a = images.b64decode(body.image_a, "image_a")
    b = images.b64decode(body.image_b, "image_b")
    return await faces.verify(a, b, body.threshold)


@router.post("/v1/search", response_model=s.SearchResponse, responses=TENANT_ERRORS)
async def http_search(faces: Faces, body: s.SearchRequest, authorization: str | None = Header(None)) -> dict:
    return await faces.search(bearer(authorization), images.b64decode(body.image), body.threshold, body.top_k, body.max_faces)
