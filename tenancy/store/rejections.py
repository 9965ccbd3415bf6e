"""The rejections table: "not this person" negative examples of a person, sealed like faces under their own
AAD domain (tenant, rejection id, model). A probe closer to one of a person's rejections than to all of the
person's faces does not match that person (tenancy/index/)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from kms.records import RecordCipher
from tenancy.audit_log import AuditRecord
from tenancy.sqlite import columns, placeholders
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import VECTOR_DTYPE, RecordCodec
from tenancy.store.errors import NotFound
from tenancy.store.faces import LoadedFaces
from tenancy.store.file import StoreFile
from tenancy.store.persons import person_exists


class RejectionInfo(NamedTuple):
    rejection_id: str
    source: str
    created_at: float


class SealedRejectionRow(NamedTuple):
    rejection_id: str
    person_id: str
    sealed: bytes  # the token (kms/records.py)
    key_version: int  # the token's, in an indexed column for rotation


class RejectionRow(NamedTuple):
    rejection_id: str
    person_id: str
    sealed: bytes
    key_version: int
    source: str
    created_at: float


class Rejections:
    def __init__(self, file: StoreFile, codec: RecordCodec, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._codec = codec
        self._audit = audit

    def add(self, person_id: str, embeddings: Sequence[np.ndarray] | np.ndarray, cipher: RecordCipher,
            source: str, *, audit: AuditRecord | None = None) -> list[str]:
        """Seal and insert negative examples of one person in one durable transaction; returns their ids."""
        now = time.time()
        rows = []
        for embedding in embeddings:
            rejection_id = uuid.uuid4().hex
            sealed = self._codec.seal_vector(embedding, cipher, self._codec.rejection_aad(rejection_id))
            rows.append(RejectionRow(rejection_id, person_id, sealed, cipher.key_version, source, now))
        with self._conn:
            if not person_exists(self._conn, person_id):
                raise NotFound(f"person {person_id} does not exist")
            self._conn.executemany(
                f"INSERT INTO rejections ({columns(RejectionRow)}) VALUES ({placeholders(RejectionRow)})", rows)
            self._audit.append(audit and audit.with_counts(rejections=len(rows)).with_ids(person_id=person_id))
        return [row.rejection_id for row in rows]

    def of_person(self, person_id: str) -> list[dict]:
        """The person's rejections (ids, source, time; nothing decrypted)."""
        rows = self._conn.execute(f"SELECT {columns(RejectionInfo)} FROM rejections WHERE person_id = ?"
                                  " ORDER BY created_at, rejection_id", (person_id,))
        return [RejectionInfo._make(row)._asdict() for row in rows]

    def delete(self, person_id: str, rejection_id: str, *, audit: AuditRecord | None = None) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM rejections WHERE rejection_id = ? AND person_id = ?", (rejection_id, person_id))
            if self._conn.changes() == 0:
                raise NotFound(f"rejection {rejection_id} of person {person_id} does not exist")
            self._audit.append(audit and audit.with_counts(rejections=1).with_ids(person_id=person_id))
        self._file.checkpoint()

    def delete_many(self, rejection_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        """Delete many rejections (retention) in one transaction and truncate the WAL."""
        if not rejection_ids:
            return
        with self._conn:
            self._conn.executemany("DELETE FROM rejections WHERE rejection_id = ?", [(r,) for r in rejection_ids])
            self._audit.append(audit and audit.with_counts(rejections=len(rejection_ids)))
        self._file.checkpoint()

    def created_before(self, cutoff: float) -> list[str]:
        """Rejections older than `cutoff`: they expire with the tenant's retention period, like faces."""
        return [rid for (rid,) in self._conn.execute("SELECT rejection_id FROM rejections WHERE created_at < ?", (cutoff,))]

    def count(self) -> int:
        """Rejections are vectors of the tenant's model with no crop kept: a model migration cannot carry them.
        (Files migrate forward on open, so the table exists.)"""
        return self._conn.execute("SELECT count(*) FROM rejections").fetchone()[0]

    def ids(self) -> set[str]:
        return {rid for (rid,) in self._conn.execute("SELECT rejection_id FROM rejections")}

    def load_all(self, cipher_for_version: Callable[[int], RecordCipher]) -> LoadedFaces:
        """Every rejection decrypted (all of them on every shard: they are few, and each shard vetoes its own
        matches with the whole set); row i of `vectors` is face_ids[i] (the rejection id) of person_ids[i]."""
        with self._conn:
            rows = list(map(SealedRejectionRow._make, self._conn.execute(
                f"SELECT {columns(SealedRejectionRow)} FROM rejections ORDER BY rejection_id")))
        vectors = np.empty((len(rows), self._codec.dim), dtype=VECTOR_DTYPE)
        for i, row in enumerate(rows):
            vectors[i] = self._codec.open_vector(cipher_for_version, row.rejection_id, row.sealed,
                                                 self._codec.rejection_aad(row.rejection_id))
        return LoadedFaces([row.rejection_id for row in rows], [row.person_id for row in rows], vectors)
