"""Head anchors: the newest head of an append-only log, kept in the key store, beside the keys.

A log (the org audit) stores its own checkpoints in its own file; whoever can rewrite that file can delete its
newest entries together with the checkpoints that name them, and what is left still verifies. An anchor is
a copy of the log's newest checkpoint kept where the log's file is not: in the key store (`keystore.db`, the
KeyService's, which `keys.keystore_dir` can put on another volume than the data dir). The record is opaque
here (the caller's encoding of a checkpoint whose provider MAC the caller verifies); what this module adds is
that an anchor only moves forward: a record for an older position than the stored one is refused, so a
checkpoint replayed from before a truncation cannot lower it.

What it cannot see: whoever can rewrite the key store as well can put back an older anchor row together
with an older log (a consistent rollback of both). Keep the key store where the data dir's writers cannot
write (another volume, another host); an append-only store would be the next step.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from kms.keyring import connect_keystore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS head_anchors (
    name       TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,   -- the log's position the record names (only ever moves forward)
    record     BLOB NOT NULL,      -- the caller's checkpoint, MACed by the key provider
    updated_at REAL NOT NULL
);
"""
_MAX_NAME_CHARS = 512
_MAX_RECORD_BYTES = 4096


class HeadAnchors:
    """The `head_anchors` table of the key store (its own connection: SQLite's WAL lets it share the file)."""

    def __init__(self, keystore_path: str | os.PathLike[str], *, vfs: str | None = None) -> None:
        self._lock = threading.Lock()  # an apsw connection is for one thread at a time
        self._db = connect_keystore(Path(keystore_path), vfs)
        with self._lock:
            self._db.execute(_SCHEMA)

    def advance(self, name: str, seq: int, record: bytes) -> bool:
        """Store `record` as `name`'s anchor if `seq` is beyond the stored one; False (nothing changed) if not."""
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME_CHARS:
            raise ValueError(f"anchor name must be a non-empty string of at most {_MAX_NAME_CHARS} chars")
        if not isinstance(seq, int) or seq < 0:
            raise ValueError("anchor seq must be a non-negative integer")
        if not isinstance(record, (bytes, bytearray)) or not 0 < len(record) <= _MAX_RECORD_BYTES:
            raise ValueError(f"anchor record must be 1..{_MAX_RECORD_BYTES} bytes")
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO head_anchors (name, seq, record, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, record = excluded.record,"
                " updated_at = excluded.updated_at WHERE excluded.seq > head_anchors.seq",
                (name, seq, bytes(record), time.time()))
            return self._db.changes() > 0

    def get(self, name: str) -> tuple[int, bytes] | None:
        """(seq, record) of `name`'s anchor, or None when it has none."""
        with self._lock:
            row = self._db.execute("SELECT seq, record FROM head_anchors WHERE name = ?", (name,)).fetchone()
        return (row[0], bytes(row[1])) if row else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
