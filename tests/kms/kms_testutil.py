"""Helpers shared by the kms tests (a uniquely named module, so it never clashes with other conftests)."""

from __future__ import annotations

from pathlib import Path


def read_keystore_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for the key store: main file, WAL and shared-memory index."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            data += candidate.read_bytes()
    return data
