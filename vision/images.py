"""Image bytes → BGR pixels, with limits checked before anything is decoded in full.

The pixel count comes from the header alone (Pillow parses headers lazily), so a 20000×20000 PNG or a
decompression bomb is refused with `image_too_large` without allocating its pixels.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import cv2
import numpy as np
from PIL import Image

from securegate.errors import ImageTooLarge, InvalidImage

# The media types an image may be sent as in a raw body (a pushed camera frame): the formats `probe` reads.
MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif")
MIN_SIDE = 8  # pixels: a smaller image cannot hold a face the detector finds

# Pillow's own bomb guard would raise its own exception first; we enforce our configured limit instead.
Image.MAX_IMAGE_PIXELS = None


def b64decode(data: str, field: str = "image") -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{field} is not valid base64", field=field) from exc
    if not raw:
        raise InvalidImage(f"{field} is empty", field=field)
    return raw


def probe(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header; refuses empty, unknown and oversized images."""
    if not data:
        raise InvalidImage("image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Exception as exc:
        raise InvalidImage("image could not be decoded (JPEG, PNG, WebP, BMP, TIFF and GIF are accepted)") from exc
    if width <= 0 or height <= 0:
        raise InvalidImage("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
            width=width, height=height, max_pixels=max_pixels,
        )
    return width, height


def check(data: bytes, max_pixels: int) -> tuple[int, int]:
    """The gate of an image that is queued rather than decoded at once (a pushed camera frame): `probe`, and
    big enough to hold a face; (width, height)."""
    width, height = probe(data, max_pixels)
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InvalidImage(f"image is {width}x{height}: too small to hold a face")
    return width, height


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """BGR uint8 pixels (alpha dropped, EXIF orientation applied), as cv2.imread would give them."""
    probe(data, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        # Formats Pillow reads but OpenCV doesn't (e.g. GIF): decode through Pillow instead.
        try:
            with Image.open(io.BytesIO(data)) as img:
                image = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
        except Exception as exc:
            raise InvalidImage("image is truncated or corrupt") from exc
    if image.shape[0] < MIN_SIDE or image.shape[1] < MIN_SIDE:
        raise InvalidImage(f"image is {image.shape[1]}x{image.shape[0]}: too small to hold a face")
    return image
