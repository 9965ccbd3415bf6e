"""HTTP for a tenant's persons and their enrolled faces (the tenant comes from the API key). Thin wrappers
over the handle API on the Ingress (deployments/ingress.py)."""

from fastapi import APIRouter, Header, Query, Response

from deployments.routes.common import TENANT_ERRORS, bearer
from securegate import schemas as s
from vision import images

router = APIRouter(tags=["persons"])


class PersonRoutes:
    """Calls `self.create_person`, `list_persons`, `get_person`, `delete_person`, `enrol_face`, `delete_face`,
    `import_faces`."""

    @router.post("/v1/persons", status_code=201, response_model=s.PersonCreated, responses=TENANT_ERRORS)
    async def http_create_person(self, body: s.PersonCreate, authorization: str | None = Header(None)) -> dict:
        return await self.create_person(bearer(authorization), body.external_id, body.metadata)

    @router.post("/v1/persons/import", response_model=s.ImportResponse, responses=TENANT_ERRORS)
    async def http_import_faces(self, body: s.ImportRequest, authorization: str | None = Header(None)) -> dict:
        """Many photos of many persons in one call (see deployments/import_api.py); answered per item."""
        items = [{"external_id": item.external_id, "metadata": item.metadata,
                  "image": images.b64decode(item.image, f"items.{k}.image")} for k, item in enumerate(body.items)]
        return await self.import_faces(bearer(authorization), items)

    @router.get("/v1/persons", response_model=s.PersonPage, responses=TENANT_ERRORS)
    async def http_list_persons(self, limit: int = Query(50, ge=1, le=1000), cursor: str | None = Query(None, max_length=512),
                                authorization: str | None = Header(None)) -> dict:
        return await self.list_persons(bearer(authorization), limit, cursor)

    @router.get("/v1/persons/{person_id}", response_model=s.PersonView, responses=TENANT_ERRORS)
    async def http_get_person(self, person_id: str, authorization: str | None = Header(None)) -> dict:
        return await self.get_person(bearer(authorization), person_id)

    @router.delete("/v1/persons/{person_id}", status_code=204, responses=TENANT_ERRORS)
    async def http_delete_person(self, person_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_person(bearer(authorization), person_id)
        return Response(status_code=204)

    @router.post("/v1/persons/{person_id}/faces", status_code=201, response_model=s.FaceEnrolled, responses=TENANT_ERRORS)
    async def http_enrol_face(self, person_id: str, body: s.FaceEnrol, authorization: str | None = Header(None)) -> dict:
        return await self.enrol_face(bearer(authorization), person_id, images.b64decode(body.image), body.face_index)

    @router.delete("/v1/persons/{person_id}/faces/{face_id}", status_code=204, responses=TENANT_ERRORS)
    async def http_delete_face(self, person_id: str, face_id: str, authorization: str | None = Header(None)) -> Response:
        await self.delete_face(bearer(authorization), person_id, face_id)
        return Response(status_code=204)
