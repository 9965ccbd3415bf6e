"""The tenant's SQLite file: opened with SecureGate's settings (tenancy/sqlite.py) and migrated forward, and
its physical hygiene (WAL truncation after deletes, VACUUM). The table groups share it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw

from tenancy import sqlite
from tenancy.store import schema

log = logging.getLogger(__name__)

_MMAP_BYTES = 1 << 34


class StoreFile:
    """One open tenant file: its connection (`conn`, shared by the table groups) and path."""

    def __init__(self, conn: apsw.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path, tenant_id: str, model: str, dim: int, *, vfs: str | None = None) -> StoreFile:
        """Open (or create) the file, migrate its schema forward, check (or record) its binding."""
        path = Path(path)
        conn = sqlite.connect(path, vfs=vfs)
        try:
            conn.create_scalar_function("sg_shard", schema.shard_of, 2, deterministic=True)
            conn.execute("PRAGMA temp_store=MEMORY")  # sorts/temp b-trees never spill to a temp file
            # Reading through mmap halves load_all's scan time (no copy into SQLite's page cache); the
            # mapping holds ciphertext only. SQLite caps it at its compile-time maximum.
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            schema.migrate(conn)
            schema.check_or_record_meta(conn, tenant_id, model, dim)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group many calls into one durable commit (bulk enrolment); nested calls become savepoints."""
        with self.conn:
            yield

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it to zero bytes; False if a reader blocked it."""
        busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("WAL checkpoint of %s blocked by a reader; old pages stay in the WAL until the next one", self.path)
        return not busy

    def vacuum(self) -> None:
        """Rebuild the file compactly (drops freed pages) and truncate the WAL."""
        self.conn.execute("VACUUM")
        self.checkpoint()
