"""The `unknowns` table (anonymous re-identification vectors, sealed bound to the model that embedded them) and
`promotions` (an unknown being made a person: the person id chosen, so a retried or recovered promotion makes
that one person; streams/promotion.py)."""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np

from kms.records import RecordCipher
from streams.event_index import EventKeys
from streams.store.event_rows import EventRows
from streams.store.file import StreamFile, CipherFor
from tenancy.sqlite import columns, placeholders

VECTOR_DTYPE = np.dtype("<f4")
MAX_UNKNOWN_SAMPLES = 8  # vectors kept per anonymous id (the newest); enough to re-identify across photos


class UnknownRow(NamedTuple):
    unknown_id: str
    created_at: float
    last_seen: float
    samples: int
    key_version: int
    sealed: bytes  # the token (kms/records.py) of the vectors
    model: str | None  # None: written before unknowns were bound to their model


_SELECT = f"SELECT {columns(UnknownRow)} FROM unknowns"


class UnknownRows:
    """Needs the file and the event rows (a finished promotion relinks the unknown's events in its transaction)."""

    def __init__(self, file: StreamFile, event_rows: EventRows) -> None:
        self.file, self.event_rows = file, event_rows

    def unknowns(self, cipher_for: CipherFor) -> dict[str, dict]:
        """Every unknown with its vectors and `model` (None: written before unknowns were bound to their model)."""
        with self.file.lock:
            rows = list(map(UnknownRow._make, self.file.db.execute(_SELECT)))
        return {row.unknown_id: self._unknown(cipher_for, row) for row in rows}

    def _unknown(self, cipher_for: CipherFor, row: UnknownRow) -> dict:
        bound = () if row.model is None else (row.model,)
        vectors = np.frombuffer(self.file.open(cipher_for, "unknowns", row.unknown_id, row.sealed, *bound), VECTOR_DTYPE)
        return {"unknown_id": row.unknown_id, "created_at": row.created_at, "last_seen": row.last_seen, "samples": row.samples,
                "model": row.model, "vectors": vectors.reshape(row.samples, -1).astype(np.float32)}

    def put_unknown(self, cipher: RecordCipher, unknown_id: str, vectors: np.ndarray, created_at: float, last_seen: float,
                    model: str) -> None:
        vectors = np.asarray(vectors, np.float32)[-MAX_UNKNOWN_SAMPLES:]
        sealed = self.file.seal(cipher, "unknowns", unknown_id, vectors.astype(VECTOR_DTYPE).tobytes(), model)
        row = UnknownRow(unknown_id, created_at, last_seen, len(vectors), cipher.key_version, sealed, model)
        with self.file.lock:
            self.file.db.execute(f"INSERT OR REPLACE INTO unknowns ({columns(UnknownRow)}) VALUES ({placeholders(UnknownRow)})", row)

    def bind_legacy_unknowns(self, cipher_for: CipherFor, cipher: RecordCipher, model: str) -> int:
        """Unknowns written before they carried their model: bound to `model` and re-sealed with it, in one
        transaction. Returns how many."""
        with self.file.lock, self.file.db:
            rows = list(map(UnknownRow._make, self.file.db.execute(f"{_SELECT} WHERE model IS NULL")))
            for row in rows:
                entry = self._unknown(cipher_for, row)
                self.put_unknown(cipher, row.unknown_id, entry["vectors"], row.created_at, row.last_seen, model)
        return len(rows)

    def delete_unknown(self, unknown_id: str) -> bool:
        with self.file.lock:
            self.file.db.execute("DELETE FROM unknowns WHERE unknown_id = ?", (unknown_id,))
            n = self.file.db.changes()
            self.file.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n > 0

    # ---- promotions: an unknown becomes a person (streams/promotion.py) ---------------------------------------
    def begin_promotion(self, unknown_id: str, new_person_id: str) -> str:
        """The person id the unknown's promotion makes: the one an earlier, unfinished attempt chose, else
        `new_person_id` (durable before the person is made, so a retry or a recovery makes the same one)."""
        with self.file.lock, self.file.db:
            for (person_id,) in self.file.db.execute("SELECT person_id FROM promotions WHERE unknown_id = ?", (unknown_id,)):
                return person_id
            self.file.db.execute("INSERT INTO promotions (unknown_id, person_id, started_at) VALUES (?,?,?)",
                                 (unknown_id, new_person_id, time.time()))
        return new_person_id

    def pending_promotions(self) -> dict[str, str]:
        """{unknown id: person id} of promotions begun and not finished."""
        with self.file.lock:
            return dict(self.file.db.execute("SELECT unknown_id, person_id FROM promotions").fetchall())

    def abandon_promotion(self, unknown_id: str) -> None:
        with self.file.lock:
            self.file.db.execute("DELETE FROM promotions WHERE unknown_id = ?", (unknown_id,))

    def finish_promotion(self, keys: EventKeys, unknown_id: str, person_id: str, external_id: str | None) -> int:
        """In one transaction: every event of the unknown names the person, the unknown and its promotion are
        gone. Returns how many events now name the person."""
        with self.file.lock, self.file.db:
            relinked = self.event_rows.relink_events(keys, unknown_id, person_id, external_id)
            self.file.db.execute("DELETE FROM unknowns WHERE unknown_id = ?", (unknown_id,))
            self.file.db.execute("DELETE FROM promotions WHERE unknown_id = ?", (unknown_id,))
        self.file.checkpoint()
        return relinked

    def unknowns_last_seen_before(self, cutoff: float) -> list[str]:
        with self.file.lock:
            return [unknown_id for (unknown_id,) in self.file.db.execute("SELECT unknown_id FROM unknowns WHERE last_seen < ?", (cutoff,))]
