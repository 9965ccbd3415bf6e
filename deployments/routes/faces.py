"""HTTP for faces without a gallery (detect, embed, verify two images) and against a tenant's gallery (verify
a person, search). Thin wrappers over the handle API on the Ingress (deployments/ingress.py)."""

from fastapi import APIRouter, Header

from deployments.routes.common import STATELESS_ERRORS, TENANT_ERRORS, bearer
from securegate import schemas as s
from vision import images

router = APIRouter(tags=["faces"])


class FaceRoutes:
    """Calls `self.detect`, `self.embed`, `self.verify`, `self.verify_person`, `self.search`."""

    @router.post("/v1/detect", response_model=s.DetectResponse, responses=STATELESS_ERRORS)
    async def http_detect(self, body: s.ImageRequest) -> dict:
        return await self.detect(images.b64decode(body.image), body.max_faces)

    @router.post("/v1/embed", response_model=s.EmbedResponse, responses=STATELESS_ERRORS)
    async def http_embed(self, body: s.ImageRequest) -> dict:
        return await self.embed(images.b64decode(body.image), body.max_faces)

    @router.post("/v1/verify", response_model=s.VerifyResponse, response_model_exclude_none=True, responses=TENANT_ERRORS)
    async def http_verify(self, body: s.VerifyRequest, authorization: str | None = Header(None)) -> dict:
        if body.person_id is not None:
            return await self.verify_person(bearer(authorization), images.b64decode(body.image), body.person_id, body.threshold)
        a = images.b64decode(body.image_a, "image_a")
        b = images.b64decode(body.image_b, "image_b")
        return await self.verify(a, b, body.threshold)

    @router.post("/v1/search", response_model=s.SearchResponse, responses=TENANT_ERRORS)
    async def http_search(self, body: s.SearchRequest, authorization: str | None = Header(None)) -> dict:
        return await self.search(bearer(authorization), images.b64decode(body.image), body.threshold, body.top_k, body.max_faces)
