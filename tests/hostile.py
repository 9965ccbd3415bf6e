"""Hostile and edge-case images, built byte by byte (nothing is downloaded or stored in the repo)."""

import io
import math
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


def bilevel_png(side: int) -> bytes:
    """A real, valid 1-bit PNG of side×side black pixels: 40000×40000 (1.6 billion pixels) in ~200 KB of file.

    Built in under a second: a deflate stream flushed in full after each chunk of rows restarts from nothing,
    so one compressed chunk stands for every identical one; the zlib trailer (Adler-32) covers them all."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    rows = math.gcd(side, 1000)
    chunk = row * rows
    deflate = zlib.compressobj(9)
    first = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)  # zlib header + the chunk's blocks
    repeat = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)  # the same blocks, no header
    adler = 1
    for _ in range(side // rows):
        adler = zlib.adler32(chunk, adler)
    body = first + repeat * (side // rows - 1) + b"\x03\x00" + struct.pack(">I", adler)  # empty final block, trailer
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def random_bytes(n: int, seed: int = 23) -> bytes:
    """Noise: no image format's magic, nothing any decoder takes."""
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
