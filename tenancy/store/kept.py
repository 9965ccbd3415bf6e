"""What a model migration works from (tenancy/migration.py): the kept enrolment crops and the shadow vectors
of the target model, each hanging off its face (deleted with it), and the switch that makes the shadow the
faces' vectors in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from kms.records import RecordCipher
from tenancy.audit_log import AuditRecord
from tenancy.sqlite import columns, placeholders
from tenancy.store import schema
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import VECTOR_DTYPE, RecordCodec, decode_crop
from tenancy.store.file import StoreFile


class SealedCropRow(NamedTuple):
    sealed: bytes  # the token (kms/records.py)


class ShadowRow(NamedTuple):
    face_id: str
    model: str  # the target model the vector is of (and bound to)
    sealed: bytes
    key_version: int


class KeptVectors:
    """Kept crops (`face_crops`) and shadow vectors (`face_shadow`)."""

    def __init__(self, file: StoreFile, codec: RecordCodec, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._codec = codec
        self._audit = audit

    def crop_counts(self) -> dict[str, int]:
        """Faces, and how many of them have a kept crop (nothing decrypted)."""
        faces, kept = self._conn.execute(
            "SELECT count(*), count(c.face_id) FROM faces f LEFT JOIN face_crops c USING (face_id)").fetchone()
        return {"faces": faces, "with_crop": kept}

    def load_crops(self, face_ids: Sequence[str], cipher_for_version: Callable[[int], RecordCipher]) -> dict[str, np.ndarray]:
        """Decrypted kept crops of these faces (those that have one), in memory only."""
        out: dict[str, np.ndarray] = {}
        for face_id in face_ids:
            row = self._conn.execute(f"SELECT {columns(SealedCropRow)} FROM face_crops WHERE face_id = ?", (face_id,)).fetchone()
            if row is None:
                continue
            row = SealedCropRow._make(row)
            out[face_id] = decode_crop(self._codec.open(cipher_for_version, face_id, row.sealed, self._codec.crop_aad(face_id)))
        return out

    def shadow_missing(self, model: str, limit: int) -> tuple[list[str], int, int]:
        """(up to `limit` face ids with a kept crop but no shadow vector for `model`, faces with no shadow
        vector for `model` at all, faces of those without a kept crop). One read snapshot."""
        with self._conn:
            missing, no_crop = self._conn.execute(
                "SELECT count(*), count(*) - count(c.face_id) FROM faces f LEFT JOIN face_shadow s"
                " ON s.face_id = f.face_id AND s.model = ? LEFT JOIN face_crops c ON c.face_id = f.face_id"
                " WHERE s.face_id IS NULL", (model,)).fetchone()
            ids = [face_id for (face_id,) in self._conn.execute(
                "SELECT f.face_id FROM faces f JOIN face_crops c USING (face_id) LEFT JOIN face_shadow s"
                " ON s.face_id = f.face_id AND s.model = ? WHERE s.face_id IS NULL ORDER BY f.face_id LIMIT ?",
                (model, limit))]
        return ids, missing, no_crop

    def shadow_count(self, model: str) -> int:
        return self._conn.execute("SELECT count(*) FROM face_shadow WHERE model = ?", (model,)).fetchone()[0]

    def add_shadow(self, model: str, dim: int, face_ids: Sequence[str], vectors: np.ndarray, cipher: RecordCipher) -> int:
        """Seal the target model's vectors of these faces into the shadow table, in one durable transaction;
        faces deleted meanwhile are skipped (returns how many were stored). Bound as the face's vector will be
        once the tenant is bound to `model` (AAD tenant | face | model)."""
        vectors = np.asarray(vectors, VECTOR_DTYPE).reshape(len(face_ids), -1)
        if vectors.shape[1] != dim or not np.isfinite(vectors).all():
            raise ValueError(f"shadow vectors must be finite and of dim {dim}, got {vectors.shape[1]}")
        rows = []
        for face_id, vector in zip(face_ids, vectors):
            sealed = cipher.seal(vector.tobytes(), aad=self._codec.shadow_aad(face_id, model))
            rows.append((*ShadowRow(face_id, model, sealed, cipher.key_version), face_id))
        with self._conn:
            before = self._conn.total_changes()
            self._conn.executemany(
                f"INSERT OR REPLACE INTO face_shadow ({columns(ShadowRow)}) SELECT {placeholders(ShadowRow)}"
                " WHERE EXISTS (SELECT 1 FROM faces WHERE face_id = ?)", rows)
            return self._conn.total_changes() - before

    def switch_model(self, model: str, dim: int, *, audit: AuditRecord | None = None) -> int | None:
        """The switch of a model migration, in ONE transaction: every face's vector replaced by its shadow
        vector for `model`, the file's binding (meta model, dim) changed, the shadow emptied. Returns the
        number of faces switched, or None (nothing changed) while some face still has no shadow vector."""
        with self._conn:
            missing = self._conn.execute(
                "SELECT count(*) FROM faces f LEFT JOIN face_shadow s ON s.face_id = f.face_id AND s.model = ?"
                " WHERE s.face_id IS NULL", (model,)).fetchone()[0]
            if missing:
                return None
            self._conn.execute(
                "UPDATE faces SET (sealed, key_version) = (SELECT sealed, key_version FROM"
                " face_shadow s WHERE s.face_id = faces.face_id AND s.model = ?)", (model,))
            switched = self._conn.changes()
            self._conn.execute("DELETE FROM face_shadow")
            schema.rebind_meta(self._conn, model, dim)
            self._audit.append(audit and audit.with_counts(faces=switched))
        self._file.checkpoint()  # the WAL held the old model's vectors
        self._codec.rebind(model, dim)
        return switched

    def clear_shadow(self) -> None:
        """An abandoned migration's shadow vectors go (e.g. a new migration to another target)."""
        with self._conn:
            self._conn.execute("DELETE FROM face_shadow")
        self._file.checkpoint()
