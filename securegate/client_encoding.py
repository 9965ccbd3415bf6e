"""How the client writes requests and reads paged answers: images as bytes or base64, ids as one URL path
segment, optional fields left out, pages followed (securegate/client.py's methods use these)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ImageInput = bytes | bytearray | memoryview | str | os.PathLike  # the bytes of an image, or its file's path
RAW_IMAGE = {"Content-Type": "application/octet-stream"}  # an image as the body: the server reads its format itself


def follow_pages(fetch: Callable[[int], Any], since: int, page_size: int) -> Iterator[Any]:
    """The events of pages with `events` and `next_since` (audit, camera events), fetched after `since` until one
    comes back short."""
    while True:
        page = fetch(since)
        yield from page.events
        if len(page.events) < page_size:
            return
        since = page.next_since


def image_bytes(image: ImageInput) -> bytes:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    raise TypeError(f"an image is bytes or a file path, not {type(image).__name__}")


def image_b64(image: ImageInput) -> str:
    return base64.b64encode(image_bytes(image)).decode("ascii")


def segment(value: str) -> str:
    """One URL path segment: ids never contain '/', but a caller's typo must not reach another route."""
    return quote(str(value), safe="")


def drop_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
