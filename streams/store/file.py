"""A tenant's events.db opened: the connection, the lock every statement runs under, the meta values, and the
sealing every table group shares (associated data bound to tenant, table and row id)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from kms.records import RecordCipher, aad, key_version_of
from streams.store.schema import create_or_migrate
from tenancy import sqlite

CipherFor = Callable[[int], RecordCipher]


def events_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "events.db"


_DOMAIN = b"securegate.streams.v1"


def _aad(tenant_id: str, table: str, row_id: str, *bound: str) -> bytes:
    """(tenant, table, row id), then whatever else the value is bound to (an unknown's model). The domain is
    length-prefixed like the fields (an empty aad() domain, then the domain as the first field): the bytes
    these files have always been sealed under."""
    return aad(b"", _DOMAIN, tenant_id, table, row_id, *bound)


class StreamFile:
    """One writer (the StreamSupervisor); apsw serves one thread at a time, so every statement is under `lock`."""

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

    def seal(self, cipher: RecordCipher, table: str, row_id: str, plaintext: bytes, *bound: str) -> bytes:
        """The sealed token (kms/records.py) of a value of `table`'s row `row_id`."""
        return cipher.seal(plaintext, aad=_aad(self.tenant_id, table, row_id, *bound))

    def open(self, cipher_for: CipherFor, table: str, row_id: str, sealed: bytes, *bound: str) -> bytes:
        """A token's plaintext, under the key version its header names."""
        return cipher_for(key_version_of(sealed)).open(sealed, aad=_aad(self.tenant_id, table, row_id, *bound))
