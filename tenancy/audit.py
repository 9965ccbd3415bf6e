"""Per-tenant audit log: who did what, when, with what outcome, and how much. Never an image or a vector.

Stored beside the tenant's faces (`{data_dir}/tenants/{id}/audit.db`), opened by `tenancy.sqlite.connect`
(durable: WAL, synchronous=FULL; private: 0600), and removed with the tenant's directory.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tenancy import sqlite

# Only these keys may appear in an event's counts: numbers and short labels, never payloads.
ALLOWED_COUNT_KEYS = {"faces", "matches", "persons", "deleted", "threshold", "top_k", "version", "remaining"}


class AuditLog:
    def __init__(self, path: str | Path, *, vfs: str | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # held around every statement: an apsw connection is for one thread at a time
        self._db = sqlite.connect(self.path, vfs=vfs)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,"
            " actor TEXT NOT NULL, action TEXT NOT NULL, outcome TEXT NOT NULL, counts TEXT NOT NULL)"
        )

    def record(self, actor: str, action: str, outcome: str, counts: dict | None = None) -> None:
        safe = {k: v for k, v in (counts or {}).items() if k in ALLOWED_COUNT_KEYS and isinstance(v, (int, float))}
        with self._lock:
            self._db.execute("INSERT INTO events (at, actor, action, outcome, counts) VALUES (?,?,?,?,?)",
                             (time.time(), actor, action, outcome, json.dumps(safe)))

    def events(self, since: int = 0, limit: int = 100) -> list[dict]:
        """Events after sequence number `since` (sequence numbers never repeat, timestamps may)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, actor, action, outcome, counts FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (since, limit),
            ).fetchall()
        return [{"seq": r[0], "at": r[1], "actor": r[2], "action": r[3], "outcome": r[4], "counts": json.loads(r[5])}
                for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def audit_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "audit.db"
