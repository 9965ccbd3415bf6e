"""HTTP for a tenant's persons and their enrolled faces (the tenant comes from the API key). Thin wrappers
over the replica's PersonApi (deployments/person_api.py) and ImportApi (deployments/import_api.py)."""

from fastapi import APIRouter, Header, Query, Request, Response

from deployments.import_api import ImportApi
from deployments.person_api import PersonApi
from deployments.routes.common import TENANT_ERRORS, bearer, collaborator
from deployments.routes.uploads import image_upload, openapi_forms
from securegate import schemas as s
from vision import images

router = APIRouter(tags=["persons"])


Persons = collaborator("persons", PersonApi)
Imports = collaborator("imports", ImportApi)


@router.post("/v1/persons", status_code=201, response_model=s.PersonCreated, responses=TENANT_ERRORS)
async def http_create_person(persons: Persons, body: s.PersonCreate, authorization: str | None = Header(None)) -> dict:
    return await persons.create_person(bearer(authorization), body.external_id, body.metadata)


@router.post("/v1/persons/import", response_model=s.ImportResponse, responses=TENANT_ERRORS)
async def http_import_faces(imports: Imports, body: s.ImportRequest, authorization: str | None = Header(None)) -> dict:
    """Many photos of many persons in one call (see deployments/import_api.py); answered per item."""
    items = [{"external_id": item.external_id, "metadata": item.metadata,
              "image": images.b64decode(item.image, f"items.{k}.image")} for k, item in enumerate(body.items)]
    return await imports.import_faces(bearer(authorization), items)


@router.get("/v1/persons", response_model=s.PersonPage, responses=TENANT_ERRORS)
async def http_list_persons(persons: Persons, limit: int = Query(50, ge=1, le=s.PAGE_LIMIT_MAX), cursor: str | None = Query(None, max_length=512),
                            external_id: str | None = Query(None, min_length=1, max_length=256,
                                                            description="the person with exactly this external id (blind index); no cursor"),
                            authorization: str | None = Header(None)) -> dict:
    return await persons.list_persons(bearer(authorization), limit, cursor, external_id)


@router.get("/v1/persons/{person_id}", response_model=s.PersonView, responses=TENANT_ERRORS)
async def http_get_person(persons: Persons, person_id: str, authorization: str | None = Header(None)) -> dict:
    return await persons.get_person(bearer(authorization), person_id)


@router.delete("/v1/persons/{person_id}", status_code=204, responses=TENANT_ERRORS)
async def http_delete_person(persons: Persons, person_id: str, authorization: str | None = Header(None)) -> Response:
    await persons.delete_person(bearer(authorization), person_id)
    return Response(status_code=204)


@router.post("/v1/persons/{person_id}/faces", status_code=201, response_model=s.FaceEnrolled,
             responses={**TENANT_ERRORS, 415: {"model": s.ErrorResponse}},
             openapi_extra=openapi_forms(s.FaceEnrol, s.FaceEnrolOptions))
async def http_enrol_face(persons: Persons, person_id: str, request: Request, authorization: str | None = Header(None)) -> dict:
    image, options = await image_upload(request, s.FaceEnrol, s.FaceEnrolOptions)
    return await persons.enrol_face(bearer(authorization), person_id, image, options.face_index)


@router.delete("/v1/persons/{person_id}/faces/{face_id}", status_code=204, responses=TENANT_ERRORS)
async def http_delete_face(persons: Persons, person_id: str, face_id: str, authorization: str | None = Header(None)) -> Response:
    await persons.delete_face(bearer(authorization), person_id, face_id)
    return Response(status_code=204)

# ---- corrections ----------------------------------------------------------------------------------------
@router.post("/v1/persons/{person_id}/rejections", status_code=201, response_model=s.RejectionsAdded, responses=TENANT_ERRORS)
async def http_reject(persons: Persons, person_id: str, body: s.RejectionCreate, authorization: str | None = Header(None)) -> dict:
    """"Not this person": a sealed negative example; a probe closer to it than to the person's faces does
    not match the person."""
    image = images.b64decode(body.image) if body.image is not None else None
    return await persons.reject(bearer(authorization), person_id, image, body.face_index, body.face_id, body.unknown_id)


@router.get("/v1/persons/{person_id}/rejections", response_model=s.RejectionList, responses=TENANT_ERRORS)
async def http_list_rejections(persons: Persons, person_id: str, authorization: str | None = Header(None)) -> dict:
    return await persons.list_rejections(bearer(authorization), person_id)


@router.delete("/v1/persons/{person_id}/rejections/{rejection_id}", status_code=204, responses=TENANT_ERRORS)
async def http_delete_rejection(persons: Persons, person_id: str, rejection_id: str, authorization: str | None = Header(None)) -> Response:
    await persons.delete_rejection(bearer(authorization), person_id, rejection_id)
    return Response(status_code=204)


@router.post("/v1/persons/{person_id}/merge", response_model=s.PersonsMerged, responses=TENANT_ERRORS)
async def http_merge_persons(persons: Persons, person_id: str, body: s.PersonMerge, authorization: str | None = Header(None)) -> dict:
    """`merged_person_id`'s faces and rejections move to this person, which absorbs it (audited)."""
    return await persons.merge_persons(bearer(authorization), person_id, body.merged_person_id)


@router.post("/v1/persons/{person_id}/faces/{face_id}/move", response_model=s.FaceMoved, responses=TENANT_ERRORS)
async def http_move_face(persons: Persons, person_id: str, face_id: str, body: s.FaceMove, authorization: str | None = Header(None)) -> dict:
    return await persons.move_face(bearer(authorization), person_id, face_id, body.to_person_id)
