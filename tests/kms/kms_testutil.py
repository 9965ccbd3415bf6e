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


class CallLog:
    """A KeyManager observer that keeps what it is told: calls, error types and latency per operation."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.seconds: dict[str, float] = {}

    def __call__(self, operation: str, seconds: float, error: str | None) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        self.seconds[operation] = self.seconds.get(operation, 0.0) + seconds
        if error:
            by_type = self.errors.setdefault(operation, {})
            by_type[error] = by_type.get(error, 0) + 1
