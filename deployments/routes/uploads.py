"""An image upload in either of its two forms: the raw image as the body (`Content-Type: image/jpeg`, any of the
image media types, or `application/octet-stream`) with the options as query parameters, or the JSON form (the
image as base64 in the `image` field beside the options). The raw form spares the client the base64, and the
proxy and the Ingress a third more bytes and a JSON document to parse per image (docs/performance.md).
Both forms pass the same body limit (BodyLimit) and image gate; any other media type is 415."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from securegate import errors
from vision import images

RAW_MEDIA_TYPES = (*images.MEDIA_TYPES, "application/octet-stream")


async def image_upload(request: Request, form: type[BaseModel], options: type[BaseModel]) -> tuple[bytes, BaseModel]:
    """(the image's bytes, its options) from either form: `form` is the JSON body's schema (an `image` field
    beside the fields of `options`), `options` the raw form's query parameters."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type in RAW_MEDIA_TYPES:
        chosen = _validated(options, dict(request.query_params), "query")
        data = await request.body()
        if not data:
            raise errors.InvalidImage("image is empty", field="image")
        return data, chosen
    # As FastAPI reads a body: JSON when declared so, or when no type is declared at all.
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise errors.UnsupportedMediaType(
            f"send the image as the body with Content-Type one of {', '.join(RAW_MEDIA_TYPES)}, "
            "or as base64 in a JSON body (application/json)", media_types=["application/json", *RAW_MEDIA_TYPES])
    if request.query_params:
        raise errors.InvalidRequest("the JSON form takes its options in the body, not the query string",
                                    problems=[{"field": k, "problem": "not a query parameter of the JSON form"}
                                              for k in request.query_params])
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.InvalidRequest("request body is not JSON") from None
    chosen = _validated(form, body, "body")
    return images.b64decode(chosen.image), chosen


def _validated(schema: type[BaseModel], values, where: str) -> BaseModel:
    """Validated as FastAPI validates a declared body, refused through the same handler (400 invalid_request)."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": (where, *e["loc"])} for e in exc.errors()]) from None


def openapi_forms(form: type[BaseModel], options: type[BaseModel]) -> dict:
    """A route's `openapi_extra`: both forms of its request body, and the raw form's query parameters."""
    schema = options.model_json_schema()
    parameters = [{"name": name, "in": "query", "required": False, "schema": prop,
                   "description": f"{prop.get('description', name)} (raw image form; the JSON form has it in the body)"}
                  for name, prop in schema["properties"].items()]
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {"parameters": parameters, "requestBody": {"required": True, "content": {
        "application/json": {"schema": form.model_json_schema()}, **{t: raw for t in RAW_MEDIA_TYPES}}}}
