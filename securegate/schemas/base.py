"""Shared by every body: the limits a request is checked against, the JSON check, `Body` (requests refuse
unknown fields) and the error envelope."""

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

IMAGE = "base64 of the image file's bytes (JPEG, PNG, WebP, BMP, TIFF, GIF)"

# What the API accepts it must be able to store and return: bodies are refused at the door past these.
MAX_BODY_DEPTH = 32  # nesting of any request body
METADATA_MAX_DEPTH = 16  # a person's metadata object counts as level 1
METADATA_MAX_BYTES = 16 * 1024  # UTF-8 JSON; a page of 1000 persons stays under 16 MiB
SEQ_MAX = 2**63 - 1  # SQLite's largest INTEGER: audit sequence numbers
PAGE_LIMIT_MAX = 1000  # items per page of a list (persons); HTTP and handle callers alike


def check_json(value: Any, max_depth: int) -> None:
    """Refuses what JSON parsing lets through but no response can carry: strings that are not Unicode
    text (lone surrogates, from escapes like \\udfff), numbers JSON has no form for (NaN, Infinity), and
    nesting deeper than `max_depth` (which breaks recursive encoders on the way out). Iterative, so
    the check itself cannot hit the recursion limit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("a string holds a lone UTF-16 surrogate (not Unicode text)") from None
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("NaN and Infinity are not JSON numbers")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def encodable(cls, data: Any) -> Any:
        check_json(data, MAX_BODY_DEPTH)
        return data


class ErrorBody(BaseModel):
    code: str = Field(..., examples=["invalid_image"])
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
