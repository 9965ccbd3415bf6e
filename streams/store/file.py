"""A tenant's events.db opened: the connection, the lock every statement runs under, the meta values, and the
sealing every table group shares (associated data bound to tenant, table and row id)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from kms.records import RecordCipher, SealedRecord
from streams.store.schema import create_or_migrate
from tenancy import sqlite

CipherFor = Callable[[int], RecordCipher]


def events_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "events.db"


def _aad(tenant_id: str, table: str, row_id: str, *bound: str) -> bytes:
    """(tenant, table, row id), then whatever else the value is bound to (an unknown's model); each part
    length-prefixed, so no two tuples give the same bytes."""
    parts = [b"securegate.streams.v1", tenant_id.encode(), table.encode(), row_id.encode(), *(b.encode() for b in bound)]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


class CameraFile:
    """One writer (the StreamRouter); apsw serves one thread at a time, so every statement is under `lock`."""

    def __init__(self, path: str | Path, tenant_id: str) -> None:
        self.path, self.tenant_id = Path(path), tenant_id
        self.lock = threading.RLock()
        self.db = sqlite.connect(self.path)
        create_or_migrate(self.db)

    def meta(self, name: str, default: float) -> float:
        with self.lock:
            return next(iter(self.db.execute("SELECT value FROM meta WHERE name = ?", (name,))), (default,))[0]

    def set_meta(self, name: str, value: float) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (name, value))

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def checkpoint(self) -> None:
        """After a deletion: secure_delete zeroed the rows in the file; the WAL's copies of their pages go too."""
        with self.lock:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def seal(self, cipher: RecordCipher, table: str, row_id: str, plaintext: bytes, *bound: str) -> SealedRecord:
        return cipher.seal(plaintext, aad=_aad(self.tenant_id, table, row_id, *bound))

    def open(self, cipher_for: CipherFor, table: str, row_id: str, version: int, nonce: bytes, ciphertext: bytes,
             *bound: str) -> bytes:
        return cipher_for(version).open(SealedRecord(nonce, ciphertext, version), aad=_aad(self.tenant_id, table, row_id, *bound))
