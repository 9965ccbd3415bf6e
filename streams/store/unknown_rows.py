"""The `unknowns` table (anonymous re-identification vectors, sealed bound to the model that embedded them) and
`promotions` (an unknown being made a person: the person id chosen, so a retried or recovered promotion makes
that one person; streams/promotion.py)."""

from __future__ import annotations

import time

import numpy as np

from kms.records import RecordCipher
from streams.event_index import EventKeys
from streams.store.event_rows import EventRows
from streams.store.file import CameraFile, CipherFor

VECTOR_DTYPE = np.dtype("<f4")
MAX_UNKNOWN_SAMPLES = 8  # vectors kept per anonymous id (the newest); enough to re-identify across photos


class UnknownRows:
    """Needs the file and the event rows (a finished promotion relinks the unknown's events in its transaction)."""

    UNKNOWN_COLUMNS = "unknown_id, created_at, last_seen, samples, key_version, nonce, vectors, model"

    def __init__(self, file: CameraFile, event_rows: EventRows) -> None:
        self.file, self.event_rows = file, event_rows

    def unknowns(self, cipher_for: CipherFor) -> dict[str, dict]:
        """Every unknown with its vectors and `model` (None: written before unknowns were bound to their model)."""
        with self.file.lock:
            rows = self.file.db.execute(f"SELECT {self.UNKNOWN_COLUMNS} FROM unknowns").fetchall()
        return {r[0]: self._unknown(cipher_for, r) for r in rows}

    def _unknown(self, cipher_for: CipherFor, r) -> dict:
        bound = () if r[7] is None else (r[7],)
        vectors = np.frombuffer(self.file.open(cipher_for, "unknowns", r[0], r[4], r[5], r[6], *bound), VECTOR_DTYPE)
        return {"unknown_id": r[0], "created_at": r[1], "last_seen": r[2], "samples": r[3], "model": r[7],
                "vectors": vectors.reshape(r[3], -1).astype(np.float32)}

    def put_unknown(self, cipher: RecordCipher, unknown_id: str, vectors: np.ndarray, created_at: float, last_seen: float,
                    model: str) -> None:
        vectors = np.asarray(vectors, np.float32)[-MAX_UNKNOWN_SAMPLES:]
        sealed = self.file.seal(cipher, "unknowns", unknown_id, vectors.astype(VECTOR_DTYPE).tobytes(), model)
        with self.file.lock:
            self.file.db.execute(f"INSERT OR REPLACE INTO unknowns ({self.UNKNOWN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                             (unknown_id, created_at, last_seen, len(vectors), sealed.key_version, sealed.nonce, sealed.ciphertext, model))

    def bind_legacy_unknowns(self, cipher_for: CipherFor, cipher: RecordCipher, model: str) -> int:
        """Unknowns written before they carried their model: bound to `model` and re-sealed with it, in one
        transaction. Returns how many."""
        with self.file.lock, self.file.db:
            rows = self.file.db.execute(f"SELECT {self.UNKNOWN_COLUMNS} FROM unknowns WHERE model IS NULL").fetchall()
            for r in rows:
                entry = self._unknown(cipher_for, r)
                self.put_unknown(cipher, r[0], entry["vectors"], r[1], r[2], model)
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
            row = self.file.db.execute("SELECT person_id FROM promotions WHERE unknown_id = ?", (unknown_id,)).fetchone()
            if row is not None:
                return row[0]
            self.file.db.execute("INSERT INTO promotions VALUES (?,?,?)", (unknown_id, new_person_id, time.time()))
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
            return [r[0] for r in self.file.db.execute("SELECT unknown_id FROM unknowns WHERE last_seen < ?", (cutoff,))]
