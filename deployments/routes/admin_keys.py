"""HTTP for admin keys (an admin key with `admin-keys:*` scopes): create one (its secret shown once), list
them, revoke one. Thin wrappers over the replica's AdminKeyApi (deployments/admin_keys.py).

At /v1/admin-keys, not /v1/admin/keys: that prefix is the key hierarchy's (rotate-root, status), and a key
named `status` would have shared a path with it."""

from fastapi import APIRouter, Header, Path

from deployments.admin_keys import AdminKeyApi
from deployments.routes.common import ADMIN_ERRORS, bearer, collaborator
from securegate import schemas as s

router = APIRouter(tags=["admin"])
ADMIN_KEY_ERRORS = {**ADMIN_ERRORS, 409: {"model": s.ErrorResponse}}


AdminKeys = collaborator("admin_keys", AdminKeyApi)


@router.post("/v1/admin-keys", status_code=201, response_model=s.AdminKeyCreated, responses=ADMIN_KEY_ERRORS)
async def http_create_admin_key(admin_keys: AdminKeys, body: s.AdminKeyCreate, authorization: str | None = Header(None)) -> dict:
    return await admin_keys.create_admin_key(bearer(authorization), body.name, body.scopes)


@router.get("/v1/admin-keys", response_model=s.AdminKeyList, responses=ADMIN_ERRORS)
async def http_list_admin_keys(admin_keys: AdminKeys, authorization: str | None = Header(None)) -> dict:
    return await admin_keys.list_admin_keys(bearer(authorization))


@router.delete("/v1/admin-keys/{name}", response_model=s.AdminKeyView, responses=ADMIN_KEY_ERRORS)
async def http_revoke_admin_key(admin_keys: AdminKeys, name: str = Path(..., max_length=64), authorization: str | None = Header(None)) -> dict:
    return await admin_keys.revoke_admin_key(bearer(authorization), name)
