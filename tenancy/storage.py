"""The data disk's health: can the service still write to it? (issue 23 §8)

A full disk refuses writes (SQLite's SQLITE_FULL, ENOSPC); the API answers those with 507 `insufficient_storage`
(securegate/errors.py) and nothing acknowledged is lost: the refused transaction rolls back whole. Readiness
asks this probe, so an orchestrator sees the disk, not only the failing requests.

The probe commits a 64 KiB row to its own small database in the data dir, through SQLite and whatever VFS is
the process's default (so the test's full-disk VFS is seen as a real full disk is). Its journal is the rollback
kind (DELETE), not WAL: a WAL reuses the space it already holds after a checkpoint, so a WAL write can succeed
on a full disk and say nothing; a journal is a new file, allocated on every commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import apsw

from securegate import errors
from tenancy import sqlite

PROBE_BYTES = 64 * 1024


class DataDisk:
    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.probe_path = self.data_dir / "storage_probe.db"

    def check(self) -> dict:
        """{writable, free_bytes}: whether a durable write of PROBE_BYTES succeeds now, and the space left."""
        try:
            conn = apsw.Connection(str(sqlite.private_file(self.probe_path)))
            try:
                conn.execute("PRAGMA journal_mode=DELETE")
                conn.execute("PRAGMA synchronous=FULL")
                with conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
                    conn.execute("INSERT OR REPLACE INTO probe VALUES (1, randomblob(?))", (PROBE_BYTES,))
            finally:
                conn.close()
            writable = True
        except Exception as exc:  # noqa: BLE001 - only a full disk is an answer; anything else propagates
            if not errors.disk_full(exc):
                raise
            writable = False
        return {"writable": writable, "free_bytes": shutil.disk_usage(self.data_dir).free}
