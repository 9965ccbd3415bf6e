"""The faces table: each face's embedding sealed under the tenant's content key (AAD: tenant, face, model),
with its kept crop (when the tenant keeps enrolment photos) written in the same transaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from itertools import islice
from typing import NamedTuple

import numpy as np

from kms.records import InvalidRecord, RecordCipher
from tenancy.audit_log import AuditRecord
from tenancy.sqlite import columns, placeholders
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import VECTOR_DTYPE, RecordCodec
from tenancy.store.errors import CorruptRecord, NotFound
from tenancy.store.file import StoreFile
from tenancy.store.persons import person_exists

# Rows decrypted per bulk call during activation.
_DECRYPT_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class FaceRecord:
    face_id: str
    person_id: str
    key_version: int
    det_score: float
    quality: float
    created_at: float


@dataclass(frozen=True, slots=True)
class LoadedFaces:
    """All faces of a tenant, decrypted; row i of `vectors` belongs to face_ids[i] / person_ids[i]."""

    face_ids: list[str]
    person_ids: list[str]
    vectors: np.ndarray  # float32 [n, dim]


class SealedFaceRow(NamedTuple):
    face_id: str
    person_id: str
    sealed: bytes  # the token (kms/records.py)
    key_version: int  # the token's, in an indexed column for rotation


class FaceRow(NamedTuple):
    face_id: str
    person_id: str
    sealed: bytes
    key_version: int
    det_score: float
    quality: float
    created_at: float


class CropRow(NamedTuple):
    face_id: str
    sealed: bytes
    key_version: int


_SELECT_RECORDS = f"SELECT {', '.join(field.name for field in fields(FaceRecord))} FROM faces"
_SELECT_SEALED = f"SELECT {columns(SealedFaceRow)} FROM faces"
_INSERT_FACE = f"INSERT INTO faces ({columns(FaceRow)}) VALUES ({placeholders(FaceRow)})"
_INSERT_CROP = f"INSERT INTO face_crops ({columns(CropRow)}) VALUES ({placeholders(CropRow)})"


def shard_filter(shard: tuple[int, int] | None) -> tuple[str, tuple]:
    """The WHERE clause keeping one shard's faces (`shard=(k, n)`; None or n <= 1: every face)."""
    if shard is None or shard[1] <= 1:
        return "", ()
    k, n = shard
    if not 0 <= k < n:
        raise ValueError(f"shard {k} out of range for {n} shards")
    return " WHERE sg_shard(face_id, ?) = ?", (n, k)


class Faces:
    def __init__(self, file: StoreFile, codec: RecordCodec, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._codec = codec
        self._audit = audit

    def add(
        self, person_id: str, embeddings: Sequence[np.ndarray] | np.ndarray, cipher: RecordCipher,
        det_scores: Sequence[float], qualities: Sequence[float], *, audit: AuditRecord | None = None,
        crops: Sequence[np.ndarray | None] | None = None,
    ) -> list[FaceRecord]:
        """Seal and insert several embeddings of one person in a single durable transaction; `crops` (aligned
        uint8 faces, None per face not kept) are sealed and stored in the same transaction."""
        if not len(embeddings) == len(det_scores) == len(qualities):
            raise ValueError("embeddings, det_scores and qualities must have the same length")
        crops = list(crops) if crops is not None else [None] * len(embeddings)
        if len(crops) != len(embeddings):
            raise ValueError("crops and embeddings must have the same length")
        now = time.time()
        records: list[FaceRecord] = []
        rows: list[FaceRow] = []
        crop_rows: list[CropRow] = []
        for embedding, det_score, quality, crop in zip(embeddings, det_scores, qualities, crops):
            face_id = uuid.uuid4().hex
            sealed = self._codec.seal_vector(embedding, cipher, self._codec.face_aad(face_id))
            records.append(FaceRecord(face_id, person_id, cipher.key_version, float(det_score), float(quality), now))
            rows.append(FaceRow(face_id, person_id, sealed, cipher.key_version, float(det_score), float(quality), now))
            if crop is not None:
                crop_rows.append(CropRow(face_id, self._codec.seal_crop(face_id, crop, cipher), cipher.key_version))
        with self._conn:
            if not person_exists(self._conn, person_id):
                raise NotFound(f"person {person_id} does not exist")
            self._conn.executemany(_INSERT_FACE, rows)
            if crop_rows:
                self._conn.executemany(_INSERT_CROP, crop_rows)
            self._audit.append(audit and audit.with_counts(faces=len(rows), **({"crops": len(crop_rows)} if crop_rows else {})))
        return records

    def delete(self, person_id: str, face_id: str, *, audit: AuditRecord | None = None) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM faces WHERE face_id = ? AND person_id = ?", (face_id, person_id))
            if self._conn.changes() == 0:
                raise NotFound(f"face {face_id} of person {person_id} does not exist")
            self._audit.append(audit and audit.with_counts(faces=1))
        self._file.checkpoint()

    def delete_many(self, face_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        """Delete many faces (retention) in one transaction, with one WAL truncation rather than one each."""
        if not face_ids:
            return
        with self._conn:
            self._conn.executemany("DELETE FROM faces WHERE face_id = ?", [(face_id,) for face_id in face_ids])
            self._audit.append(audit and audit.with_counts(deleted=len(face_ids)))
        self._file.checkpoint()

    def records(self, where: str, params: tuple) -> list[FaceRecord]:
        rows = self._conn.execute(f"{_SELECT_RECORDS} WHERE {where} ORDER BY created_at, face_id", params)
        return [FaceRecord(*row) for row in rows]  # _SELECT_RECORDS lists FaceRecord's fields, in order

    def owner(self, face_id: str) -> str | None:
        """The person a face belongs to (nothing decrypted)."""
        for (person_id,) in self._conn.execute("SELECT person_id FROM faces WHERE face_id = ?", (face_id,)):
            return person_id
        return None

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM faces").fetchone()[0]

    def ids(self, shard: tuple[int, int] | None = None) -> set[str]:
        """Ids of the stored faces (of one shard when given); nothing is decrypted."""
        where, params = shard_filter(shard)
        return {face_id for (face_id,) in self._conn.execute(f"SELECT face_id FROM faces{where}", params)}

    def load_all(self, cipher_for_version: Callable[[int], RecordCipher], shard: tuple[int, int] | None = None) -> LoadedFaces:
        """Decrypt every embedding into one float32 [n, dim] array (for building the in-memory index).

        `shard=(k, n)` keeps only the faces with `shard_of(face_id, n) == k`; the filter runs in SQL, before
        anything is decrypted, so a shard never opens (or holds) another shard's vectors."""
        ciphers: dict[int, RecordCipher] = {}
        row_bytes = self._codec.vector_bytes
        face_aad = self._codec.face_aad
        where, params = shard_filter(shard)
        with self._conn:  # one read snapshot: the count and the rows agree even with concurrent writers
            n = self._conn.execute(f"SELECT count(*) FROM faces{where}", params).fetchone()[0]
            buffer = bytearray(n * row_bytes)
            view = memoryview(buffer)
            face_ids: list[str] = [""] * n
            person_ids: list[str] = [""] * n
            # Plain tuples here (one per face of the tenant), unpacked in SealedFaceRow's column order.
            rows = self._conn.execute(f"{_SELECT_SEALED}{where}", params)
            i = 0
            while chunk := list(islice(rows, _DECRYPT_CHUNK)):
                # Bulk decryption per key version (one version, outside a rotation).
                by_version: dict[int, tuple[list[int], list[bytes], list[bytes]]] = {}
                for j, (face_id, person_id, sealed_token, key_version) in enumerate(chunk):
                    face_ids[i + j] = face_id
                    person_ids[i + j] = person_id
                    positions, sealed, aads = by_version.setdefault(key_version, ([], [], []))
                    positions.append(j)
                    sealed.append(sealed_token)
                    aads.append(face_aad(face_id))
                for key_version, (positions, sealed, aads) in by_version.items():
                    cipher = ciphers.get(key_version)
                    if cipher is None:
                        cipher = ciphers[key_version] = cipher_for_version(key_version)
                    try:
                        plaintexts = cipher.open_many(sealed, aads)
                    except InvalidRecord as exc:
                        raise CorruptRecord(face_ids[i + positions[exc.index or 0]]) from exc
                    for j, plaintext in zip(positions, plaintexts):
                        if len(plaintext) != row_bytes:
                            raise CorruptRecord(face_ids[i + j])
                        view[(i + j) * row_bytes : (i + j + 1) * row_bytes] = plaintext
                i += len(chunk)
        vectors = np.frombuffer(buffer, dtype=VECTOR_DTYPE).reshape(n, self._codec.dim)
        return LoadedFaces(face_ids, person_ids, vectors)
