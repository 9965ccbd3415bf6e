"""Content-key rotations in progress, persisted (`{data_dir}/rotations.db`) so a restart resumes them.

A rotation is: a new content-key version (made at once by the KeyService), then every record re-sealed
under it, batch by batch (each batch one transaction of the tenant's file, so progress there is durable
by itself), then the old versions retired. This table says which tenants are between the first step and the
last: the TenantService resumes those when it starts. Progress figures are informative; the tenant file's
key versions are the truth (a resumed rotation re-seals whatever is not yet under the current version).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tenancy import sqlite

RUNNING, DONE, FAILED = "running", "done", "failed"


class RotationLog:
    def __init__(self, path: str | Path, *, vfs: str | None = None) -> None:
        self._lock = threading.Lock()  # an apsw connection is for one thread at a time
        self._db = sqlite.connect(path, vfs=vfs)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rotations (tenant_id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
            " state TEXT NOT NULL, remaining INTEGER, total INTEGER, error TEXT, started_at REAL NOT NULL,"
            " updated_at REAL NOT NULL)")

    def start(self, tenant_id: str, version: int) -> dict:
        now = time.time()
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO rotations VALUES (?, ?, ?, NULL, NULL, NULL, ?, ?)",
                             (tenant_id, version, RUNNING, now, now))
        return self.get(tenant_id)

    def update(self, tenant_id: str, *, state: str | None = None, remaining: int | None = None,
               total: int | None = None, error: str | None = None) -> dict:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE rotations SET state = coalesce(?, state), remaining = coalesce(?, remaining),"
                " total = coalesce(?, total), error = ?, updated_at = ? WHERE tenant_id = ?",
                (state, remaining, total, error, time.time(), tenant_id))
        return self.get(tenant_id)

    def get(self, tenant_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT tenant_id, version, state, remaining, total, error FROM rotations"
                                   " WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return _as_dict(row) if row else None

    def all(self) -> dict[str, dict]:
        with self._lock:
            rows = self._db.execute("SELECT tenant_id, version, state, remaining, total, error FROM rotations").fetchall()
        return {row[0]: _as_dict(row) for row in rows}

    def running(self) -> list[dict]:
        return [r for r in self.all().values() if r["state"] == RUNNING]

    def forget(self, tenant_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM rotations WHERE tenant_id = ?", (tenant_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _as_dict(row: tuple) -> dict:
    tenant_id, version, state, remaining, total, error = row
    out = {"tenant_id": tenant_id, "version": version, "state": state, "remaining": remaining, "total": total}
    if error:
        out["error"] = error
    return out


def rotations_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "rotations.db"
