"""The persons table: each person's external id and metadata sealed per field under the tenant's content key
(tenancy/personal.py), the external id found and kept unique through a keyed blind index."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

from tenancy import personal
from tenancy.audit_log import AuditRecord
from tenancy.personal import PersonKeys
from tenancy.sqlite import columns
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import RecordCodec
from tenancy.store.errors import DuplicateExternalId, InvalidCursor, InvalidMetadata, NotFound
from tenancy.store.file import StoreFile


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: float


class PersonRow(NamedTuple):
    person_id: str
    key_version: int  # 0: written in clear before schema v3, not sealed yet
    external_id: bytes | str | None
    metadata: bytes | str
    created_at: float


_SELECT = f"SELECT {columns(PersonRow)} FROM persons"


def encode_cursor(created_at: float, person_id: str) -> str:
    return f"{created_at.hex()}:{person_id}"  # float.hex round-trips exactly, unlike str()


def decode_cursor(cursor: str) -> tuple[float, str]:
    created_hex, _, person_id = cursor.partition(":")
    try:
        created_at = float.fromhex(created_hex)
    except (ValueError, OverflowError) as exc:  # fromhex overflows on exponents like 0x1p+99999
        raise InvalidCursor(f"malformed pagination cursor {cursor[:64]!r}") from exc
    if not math.isfinite(created_at):
        raise InvalidCursor(f"malformed pagination cursor {cursor[:64]!r}")
    return created_at, person_id


def person_exists(conn: apsw.Connection, person_id: str) -> bool:
    """Whether the person exists (nothing decrypted); inside a caller's transaction, what its write checks."""
    return conn.execute("SELECT 1 FROM persons WHERE person_id = ?", (person_id,)).fetchone() is not None


class Persons:
    def __init__(self, file: StoreFile, codec: RecordCodec, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._codec = codec
        self._audit = audit

    def create(self, external_id: str | None, metadata: dict[str, Any], *, keys: PersonKeys,
               audit: AuditRecord | None = None, person_id: str | None = None) -> Person:
        """Seal the person's fields under the current content key; unique external ids via the blind index.
        `person_id`: the id to make the person under (a promotion chooses it first); else a new one."""
        person = Person(person_id or uuid.uuid4().hex, external_id, dict(metadata), time.time())
        try:
            # Standard JSON only (no NaN/Infinity): what is stored must read back as the same value.
            encoded = json.dumps(person.metadata, sort_keys=True, allow_nan=False)
        except (ValueError, TypeError, RecursionError) as exc:
            raise InvalidMetadata(f"metadata is not storable as JSON: {exc}") from exc
        cipher = keys.current()
        sealed_metadata = self._codec.seal_field(cipher, person.person_id, personal.METADATA, encoded)
        sealed_external_id = tag = None
        if external_id is not None:
            sealed_external_id = self._codec.seal_field(cipher, person.person_id, personal.EXTERNAL_ID, external_id)
            tag = keys.blind_index(cipher.key_version, external_id)
        try:
            with self._conn:
                # Mid-rotation the UNIQUE blind index covers one key version: look under every version in use.
                if external_id is not None and self._find_external_id(external_id, keys) is not None:
                    raise DuplicateExternalId(f"external id {external_id!r} already exists")
                self._conn.execute(
                    "INSERT INTO persons (person_id, key_version, blind_index, external_id, metadata, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (person.person_id, cipher.key_version, tag, sealed_external_id, sealed_metadata, person.created_at),
                )
                self._audit.append(audit and audit.with_counts(persons=1))
        except apsw.ConstraintError as exc:
            raise DuplicateExternalId(f"external id {external_id!r} already exists") from exc
        return person

    def exists(self, person_id: str) -> bool:
        return person_exists(self._conn, person_id)

    def get(self, person_id: str, *, keys: PersonKeys) -> Person | None:
        row = self._conn.execute(f"{_SELECT} WHERE person_id = ?", (person_id,)).fetchone()
        return self._person(PersonRow._make(row), keys) if row else None

    def by_external_id(self, external_id: str, *, keys: PersonKeys) -> Person | None:
        row = self._find_external_id(external_id, keys)
        return self._person(row, keys) if row else None

    def page(self, limit: int, cursor: str | None = None, *, keys: PersonKeys) -> tuple[list[Person], str | None]:
        """Persons in creation order; pass the returned cursor to get the next page (None = last page)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        sql = _SELECT
        params: tuple = ()
        if cursor is not None:
            sql += " WHERE (created_at, person_id) > (?, ?)"
            params = decode_cursor(cursor)
        sql += " ORDER BY created_at, person_id LIMIT ?"
        # Fetch one extra row to know whether another page exists without a second query.
        rows = list(map(PersonRow._make, self._conn.execute(sql, (*params, limit + 1))))
        persons = [self._person(row, keys) for row in rows[:limit]]
        next_cursor = encode_cursor(persons[-1].created_at, persons[-1].person_id) if len(rows) > limit else None
        return persons, next_cursor

    def external_ids(self, keys: PersonKeys, person_ids: set[str] | None = None) -> dict[str, str | None]:
        """{person id: external id} of every person (of `person_ids` when given); metadata is not decrypted."""
        out: dict[str, str | None] = {}
        for person_id, version, sealed in self._conn.execute("SELECT person_id, key_version, external_id FROM persons"):
            if person_ids is None or person_id in person_ids:
                out[person_id] = self._codec.open_field(keys, person_id, version, personal.EXTERNAL_ID, sealed)
        return out

    def key_versions(self) -> dict[int, int]:
        """{content-key version: persons sealed under it}; 0 counts persons not sealed yet (legacy rows)."""
        return dict(self._conn.execute("SELECT key_version, count(*) FROM persons GROUP BY key_version"))

    def seal_legacy(self, keys: PersonKeys, batch_size: int = 500) -> int:
        """Seal the persons written in clear before schema v3 (run at activation); returns how many."""
        done = 0
        for done, _ in self._reseal(keys, "key_version = 0", (), batch_size):
            pass
        return done

    def reencrypt(self, keys: PersonKeys, batch_size: int = 500) -> Iterator[tuple[int, int]]:
        """Re-seal every person not under the current content key and re-compute its blind-index tag under the
        new version's blind-index key, `batch_size` per transaction; yields (done, total) after each batch."""
        version = keys.current().key_version
        return self._reseal(keys, "key_version != ?", (version,), batch_size)

    def _reseal(self, keys: PersonKeys, where: str, params: tuple, batch_size: int) -> Iterator[tuple[int, int]]:
        cipher = keys.current()
        seal = self._codec.seal_field
        done = 0
        while True:
            with self._conn:
                remaining = self._conn.execute(f"SELECT count(*) FROM persons WHERE {where}", params).fetchone()[0]
                if remaining == 0:
                    break
                batch = list(map(PersonRow._make, self._conn.execute(f"{_SELECT} WHERE {where} LIMIT ?", (*params, batch_size))))
                updates = []
                for row in batch:
                    person = self._person(row, keys)
                    sealed_external_id = tag = None
                    if person.external_id is not None:
                        sealed_external_id = seal(cipher, person.person_id, personal.EXTERNAL_ID, person.external_id)
                        tag = keys.blind_index(cipher.key_version, person.external_id)
                    encoded = json.dumps(person.metadata, sort_keys=True, allow_nan=False)
                    updates.append((cipher.key_version, tag, sealed_external_id,
                                    seal(cipher, person.person_id, personal.METADATA, encoded), person.person_id))
                self._conn.executemany(
                    "UPDATE persons SET key_version = ?, blind_index = ?, external_id = ?, metadata = ? WHERE person_id = ?",
                    updates)
            done += len(batch)
            yield done, done + remaining - len(batch)
        if done:
            self._file.checkpoint()  # the WAL held the rows as they were (in clear, for legacy rows)

    def _person(self, row: PersonRow, keys: PersonKeys) -> Person:
        open_field = self._codec.open_field
        return Person(row.person_id, open_field(keys, row.person_id, row.key_version, personal.EXTERNAL_ID, row.external_id),
                      json.loads(open_field(keys, row.person_id, row.key_version, personal.METADATA, row.metadata)),
                      row.created_at)

    def _find_external_id(self, external_id: str, keys: PersonKeys) -> PersonRow | None:
        """The person row whose external id is `external_id`: its blind-index tag under each content-key version
        in use (one, two during a rotation; each found by the index), or, for legacy rows, the clear value."""
        version = self._conn.execute("SELECT min(key_version) FROM persons WHERE key_version > 0").fetchone()[0]
        while version is not None:
            row = self._conn.execute(f"{_SELECT} WHERE blind_index = ? AND key_version = ?",
                                     (keys.blind_index(version, external_id), version)).fetchone()
            if row is not None:
                return PersonRow._make(row)
            version = self._conn.execute("SELECT min(key_version) FROM persons WHERE key_version > ?", (version,)).fetchone()[0]
        row = self._conn.execute(f"{_SELECT} WHERE key_version = 0 AND external_id = ?", (external_id,)).fetchone()
        return PersonRow._make(row) if row else None

    def delete(self, person_id: str, *, audit: AuditRecord | None = None) -> list[str]:
        """Delete a person and (by cascade) their faces; returns the deleted face ids."""
        with self._conn:
            face_ids = [face_id for (face_id,) in self._conn.execute("SELECT face_id FROM faces WHERE person_id = ?", (person_id,))]
            self._conn.execute("DELETE FROM persons WHERE person_id = ?", (person_id,))
            if self._conn.changes() == 0:
                raise NotFound(f"person {person_id} does not exist")
            self._audit.append(audit and audit.with_counts(persons=1, faces=len(face_ids)))
        self._file.checkpoint()
        return face_ids
