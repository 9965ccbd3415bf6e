"""A content-key rotation over the tenant's sealed vectors: faces and rejections (`vectors`), kept crops and
shadow vectors (`kept`), each row opened under its old version and re-sealed under the new one with the same
AAD, a batch per transaction. (Persons re-seal in tenancy/store/persons.py: their blind index changes too.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from kms.records import RecordCipher
from tenancy.audit_log import AuditRecord
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import RecordCodec
from tenancy.store.file import StoreFile


class SealedRow(NamedTuple):
    row_id: str
    model: str | None  # a shadow vector's target model; None for the others
    sealed: bytes  # the token (kms/records.py)


class _Table(NamedTuple):
    name: str
    id_column: str
    model_column: str  # "NULL" where the AAD's model is the file's
    aad: Callable[[SealedRow], bytes]


class Resealer:
    def __init__(self, file: StoreFile, codec: RecordCodec, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._audit = audit
        self._vectors = (_Table("faces", "face_id", "NULL", lambda row: codec.face_aad(row.row_id)),
                         _Table("rejections", "rejection_id", "NULL", lambda row: codec.rejection_aad(row.row_id)))
        self._kept = (_Table("face_crops", "face_id", "NULL", lambda row: codec.crop_aad(row.row_id)),
                      _Table("face_shadow", "face_id", "model", lambda row: codec.shadow_aad(row.row_id, row.model)))
        self._codec = codec

    def key_versions_in_use(self) -> dict[int, int]:
        """{content-key version: sealed vectors under it}, faces and rejections together (what `vectors` re-seals)."""
        return dict(self._conn.execute("SELECT key_version, count(*) FROM (SELECT key_version FROM faces"
                                       " UNION ALL SELECT key_version FROM rejections) GROUP BY key_version"))

    def vectors(self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher, batch_size: int = 500,
                *, audit: AuditRecord | None = None) -> Iterator[tuple[int, int]]:
        """Re-seal every face and rejection not under `new_cipher`'s version, `batch_size` rows per transaction.

        Yields (done, total) after each committed batch; other reads and writes interleave between
        batches. Ends with a WAL truncation so the records under the retired key do not linger there.
        """
        done = 0
        while True:
            with self._conn:
                counts = [self._stale(table, new_cipher.key_version) for table in self._vectors]
                remaining = sum(counts)
                if remaining == 0:
                    break
                table = next(t for t, n in zip(self._vectors, counts) if n)
                resealed = self._reseal_batch(table, cipher_for_version, new_cipher, batch_size)
                self._audit.append(audit and audit.with_counts(**{table.name: resealed}, version=new_cipher.key_version,
                                                               remaining=remaining - resealed))
            done += resealed
            yield done, done + remaining - resealed
        self._file.checkpoint()

    def kept(self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher, batch_size: int = 500) -> int:
        """One batch of a content-key rotation over the kept crops and shadow vectors (one transaction);
        returns how many of them are still under another version afterwards."""
        with self._conn:
            for table in self._kept:
                self._reseal_batch(table, cipher_for_version, new_cipher, batch_size)
            return sum(self._stale(table, new_cipher.key_version) for table in self._kept)

    def _stale(self, table: _Table, version: int) -> int:
        return self._conn.execute(f"SELECT count(*) FROM {table.name} WHERE key_version != ?", (version,)).fetchone()[0]

    def _reseal_batch(self, table: _Table, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher,
                      batch_size: int) -> int:
        """Up to `batch_size` rows of `table` not under `new_cipher`'s version re-sealed (in the caller's
        transaction); returns how many."""
        rows = map(SealedRow._make, self._conn.execute(
            f"SELECT {table.id_column}, {table.model_column}, sealed FROM {table.name}"
            " WHERE key_version != ? LIMIT ?", (new_cipher.key_version, batch_size)))
        updates = []
        for row in rows:
            aad = table.aad(row)
            plaintext = self._codec.open(cipher_for_version, row.row_id, row.sealed, aad)
            updates.append((new_cipher.seal(plaintext, aad=aad), new_cipher.key_version, row.row_id))
        self._conn.executemany(f"UPDATE {table.name} SET sealed = ?, key_version = ? WHERE {table.id_column} = ?", updates)
        return len(updates)
