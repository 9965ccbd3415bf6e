"""Hostile and edge-case images, built byte by byte (nothing is downloaded or stored in the repo)."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height but whose data is a few bytes: refused from the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def decompression_bomb(side: int = 10_000) -> bytes:
    """A real, valid grayscale PNG of side×side zeros: ~100 MB of pixels in ~100 KB of file."""
    raw = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    body = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def encode(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def faceless_photo(size: int = 256) -> bytes:
    """A smooth gradient: a valid image with no face in it."""
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    return encode(np.dstack([np.tile(ramp, (size, 1))] * 3), "JPEG")


def one_pixel() -> bytes:
    return encode(np.zeros((1, 1, 3), np.uint8))
