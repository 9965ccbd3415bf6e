"""Per-tenant encrypted face store: one SQLite file per tenant, every embedding sealed with AES-256-GCM.

Guarantees:
- No plaintext vector ever reaches SQLite: embeddings are sealed before they are bound to a statement and
  opened only in `load_all` / `reencrypt`, in process memory.
- Each record's associated data is (tenant_id, face_id, model name), so a row copied to another face id
  or into another tenant's file fails authentication instead of silently matching someone else.
- Nothing a tenant says about a person is in clear either (tenancy/personal.py): `external_id` and `metadata`
  are sealed per field (AAD: tenant, person id, field), and the external id is found and kept unique through
  a keyed blind index (HMAC-SHA256), re-computed under the new key when the content key rotates.
- `add_face` returns only after a durable commit (WAL + synchronous=FULL fsyncs the WAL on commit).
- Deletion is real: secure_delete zeroes freed cells and pages, and delete paths truncate the WAL so the
  old page images (which still hold the ciphertext, face id and external id) do not linger there.

The file is opened by `tenancy.sqlite.connect` (apsw, and why): `with conn:` really begins a transaction and
nests, so `transaction()` groups calls into one commit and a read takes one snapshot (`with conn:` around a
SELECT). (No SQLite extension is loaded: sqlite-vec is only a benchmark baseline.)
"""

from __future__ import annotations

import json
import logging
import math
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import numpy as np

from securegate import errors

from kms.records import InvalidRecord, RecordCipher, SealedRecord
from tenancy import audit as audit_chain
from tenancy import chain, fence, sqlite
from tenancy import bulk_import
from tenancy.audit import AuditRecord
from tenancy import personal
from tenancy.personal import PersonKeys

log = logging.getLogger(__name__)

# Embeddings are stored little-endian regardless of host so a file moves between machines.
VECTOR_DTYPE = np.dtype("<f4")
_AAD_DOMAIN = b"securegate.tenancy.face.v1"
# Rejections ("not this person" negative examples) are embeddings too, sealed the same way under their own
# domain: a rejection row copied into the faces table (or the reverse) fails authentication.
_REJECTION_AAD_DOMAIN = b"securegate.tenancy.rejection.v1"
# Kept enrolment crops (aligned 112x112 faces) under their own domain: a crop is never mistaken for a vector.
_CROP_AAD_DOMAIN = b"securegate.tenancy.crop.v1"
_MMAP_BYTES = 1 << 34


# Rows decrypted per bulk call during activation.
_DECRYPT_CHUNK = 4096


class StoreError(Exception):
    """Base class of the typed errors raised by `TenantStore`."""


class ModelMismatch(StoreError):
    """The file was created for another embedding model or dimension; its vectors are not comparable."""

    api_error = errors.ModelMismatch


class TenantMismatch(StoreError):
    """The file belongs to another tenant."""


class DuplicateExternalId(StoreError):
    """Another person of this tenant already has that external id."""

    api_error = errors.Conflict


class InvalidMetadata(StoreError, ValueError):
    """A person's metadata that cannot be stored as standard JSON and read back (NaN, infinity, unencodable)."""

    api_error = errors.InvalidRequest


class NotFound(StoreError):
    """The person or face does not exist (or the face does not belong to that person)."""

    api_error = errors.NotFound


class CorruptPerson(StoreError):
    """A person's sealed external id or metadata failed authentication: tampered, moved, or wrong key."""

    api_error = errors.CorruptRecord

    def __init__(self, person_id: str) -> None:
        super().__init__(f"person {person_id}: sealed personal fields failed authentication")
        self.person_id = person_id

    def api_details(self) -> dict:
        return {"person_id": self.person_id}


class SamePerson(StoreError, ValueError):
    """A correction that names one person twice: a merge into itself, a face moved to its own person, a
    person's own face given as a rejection of that person."""

    api_error = errors.SamePerson


class CorruptRecord(StoreError):
    """A sealed embedding failed authentication: tampered, moved between rows/tenants, or wrong key."""

    api_error = errors.CorruptRecord

    def __init__(self, face_id: str) -> None:
        super().__init__(f"face {face_id}: sealed embedding failed authentication")
        self.face_id = face_id

    def api_details(self) -> dict:
        return {"face_id": self.face_id}


@dataclass(frozen=True, slots=True)
class Person:
    person_id: str
    external_id: str | None
    metadata: dict[str, Any]
    created_at: float


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


def shard_of(face_id: str, shards: int) -> int:
    """The shard (0 = the primary) holding a face in a tenant index split `shards` ways; stable for a face id.

    Face ids are uuid4 hex, whose first 32 bits are random: `int(face_id[:8], 16) % shards`. Ids that are
    not hex (never written by this store) fall back to a CRC32 of the id, still stable."""
    if shards <= 1:
        return 0
    try:
        return int(face_id[:8], 16) % shards
    except ValueError:
        return zlib.crc32(face_id.encode("utf-8")) % shards


def record_aad(tenant_id: str, face_id: str, model: str) -> bytes:
    """Canonical associated data binding a sealed embedding to its tenant, face and model.

    Each field is length-prefixed so no two distinct tuples serialise to the same bytes.
    """
    out = bytearray(_AAD_DOMAIN)
    for field in (tenant_id, face_id, model):
        encoded = field.encode("utf-8")
        out += struct.pack(">I", len(encoded))
        out += encoded
    return bytes(out)


def record_aad_domain(domain: bytes, *fields: str) -> bytes:
    """Associated data of a sealed record of another kind than a face vector (a kept crop): its own domain,
    then each field length-prefixed, as record_aad."""
    out = bytearray(domain)
    for field in fields:
        encoded = field.encode("utf-8")
        out += struct.pack(">I", len(encoded)) + encoded
    return bytes(out)


def encode_crop(crop: np.ndarray) -> bytes:
    """An aligned face crop (H, W, 3 uint8) as bytes: height, width (uint16 big-endian) then the pixels."""
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"a crop is H x W x 3, got {crop.shape}")
    return struct.pack(">HH", crop.shape[0], crop.shape[1]) + crop.tobytes()


def decode_crop(data: bytes) -> np.ndarray:
    height, width = struct.unpack(">HH", data[:4])
    return np.frombuffer(data[4:], np.uint8).reshape(height, width, 3).copy()


def _migrate_v1(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TABLE persons (
            person_id   TEXT PRIMARY KEY,
            external_id TEXT UNIQUE,
            metadata    TEXT NOT NULL CHECK (json_valid(metadata)),
            created_at  REAL NOT NULL
        );
        CREATE INDEX persons_by_creation ON persons (created_at, person_id);
        CREATE TABLE faces (
            face_id     TEXT PRIMARY KEY,
            person_id   TEXT NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
            ciphertext  BLOB NOT NULL,
            nonce       BLOB NOT NULL,
            key_version INTEGER NOT NULL,
            det_score   REAL NOT NULL,
            quality     REAL NOT NULL,
            created_at  REAL NOT NULL
        );
        CREATE INDEX faces_by_person ON faces (person_id);
        CREATE INDEX faces_by_key_version ON faces (key_version);
        """
    )


def _migrate_v2(conn: apsw.Connection) -> None:
    # The tenant's audit chain and its MACed checkpoints, in the same file as what they record (tenancy/audit.py).
    conn.execute(audit_chain.AUDIT_TABLES)


def _migrate_v3(conn: apsw.Connection) -> None:
    # Personal fields sealed (tenancy/personal.py). The table is rebuilt (the clear UNIQUE external_id and the
    # JSON CHECK on metadata cannot be dropped in place); `_migrate` turns foreign keys off around it so dropping
    # the old table does not cascade to the faces. Rows written before keep key_version 0 and their values in
    # clear until the tenant's next activation seals them (`seal_legacy_persons`), then the WAL is truncated.
    conn.execute(
        """
        CREATE TABLE persons_sealed (
            person_id   TEXT PRIMARY KEY,
            key_version INTEGER NOT NULL,  -- content-key version of both fields; 0: not sealed yet (legacy)
            blind_index BLOB UNIQUE,       -- HMAC-SHA256 of the external id under that version's blind-index key
            external_id BLOB,              -- nonce | AES-GCM ciphertext; NULL: no external id
            metadata    BLOB NOT NULL,     -- nonce | AES-GCM ciphertext of the JSON
            created_at  REAL NOT NULL
        );
        INSERT INTO persons_sealed (person_id, key_version, blind_index, external_id, metadata, created_at)
            SELECT person_id, 0, NULL, external_id, metadata, created_at FROM persons;
        DROP TABLE persons;
        ALTER TABLE persons_sealed RENAME TO persons;
        CREATE INDEX persons_by_creation ON persons (created_at, person_id);
        CREATE INDEX persons_by_key_version ON persons (key_version);
        """
    )


# Migrations that rebuild a table referenced by a foreign key: run with foreign keys off (see `_migrate`).
_REBUILDS = {2}

# Migration i brings the schema from user_version i to i + 1. Append only; never edit a shipped step.
def _migrate_v4(conn: apsw.Connection) -> None:
    # Keyed tags of imported photos, so a re-import skips what is enrolled (tenancy/bulk_import.py).
    conn.execute(bulk_import.PHOTO_TABLE)


def _migrate_v5(conn: apsw.Connection) -> None:
    # Rejections: "not this person" negative examples of a person, sealed like faces (AAD: tenant, rejection
    # id, model, under their own domain). A probe closer to one of a person's rejections than to all of the
    # person's faces does not match that person (tenancy/index.py). Deleted with the person (cascade).
    conn.execute(
        """
        CREATE TABLE rejections (
            rejection_id TEXT PRIMARY KEY,
            person_id    TEXT NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
            ciphertext   BLOB NOT NULL,
            nonce        BLOB NOT NULL,
            key_version  INTEGER NOT NULL,
            source       TEXT NOT NULL,  -- image, face or unknown: what the vector came from (no id of it)
            created_at   REAL NOT NULL
        );
        CREATE INDEX rejections_by_person ON rejections (person_id);
        CREATE INDEX rejections_by_key_version ON rejections (key_version);
        """
    )


def _migrate_v6(conn: apsw.Connection) -> None:
    # Kept enrolment crops (tenant setting keep_enrolment_photos) and the shadow vectors of a model migration
    # (tenancy/migration.py). Both hang off their face: deleting the face (by hand, with its person, by
    # retention) deletes them in the same transaction (cascade). Each sealed like a face vector, under its own
    # AAD domain: a crop's (tenant, face); a shadow vector's (tenant, face, target model), exactly the AAD the
    # face's vector has once the tenant is bound to the target model, so the switch moves ciphertext as it is.
    conn.execute(
        """
        CREATE TABLE face_crops (
            face_id     TEXT PRIMARY KEY REFERENCES faces (face_id) ON DELETE CASCADE,
            ciphertext  BLOB NOT NULL,
            nonce       BLOB NOT NULL,
            key_version INTEGER NOT NULL
        );
        CREATE INDEX face_crops_by_key_version ON face_crops (key_version);
        CREATE TABLE face_shadow (
            face_id     TEXT PRIMARY KEY REFERENCES faces (face_id) ON DELETE CASCADE,
            model       TEXT NOT NULL,
            ciphertext  BLOB NOT NULL,
            nonce       BLOB NOT NULL,
            key_version INTEGER NOT NULL
        );
        CREATE INDEX face_shadow_by_key_version ON face_shadow (key_version);
        """
    )


# v6 is the model-migration step (kept crops, shadow vectors); v5 (rejections) is a concurrent change.
MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (_migrate_v1, _migrate_v2, _migrate_v3, _migrate_v4, _migrate_v5,
                                                             _migrate_v6)
SCHEMA_VERSION = len(MIGRATIONS)


def _encode_cursor(created_at: float, person_id: str) -> str:
    return f"{created_at.hex()}:{person_id}"  # float.hex round-trips exactly, unlike str()


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor this store did not hand out."""

    api_error = errors.InvalidRequest


def _decode_cursor(cursor: str) -> tuple[float, str]:
    created_hex, _, person_id = cursor.partition(":")
    try:
        created_at = float.fromhex(created_hex)
    except (ValueError, OverflowError) as exc:  # fromhex overflows on exponents like 0x1p+99999
        raise InvalidCursor(f"malformed pagination cursor {cursor[:64]!r}") from exc
    if not math.isfinite(created_at):
        raise InvalidCursor(f"malformed pagination cursor {cursor[:64]!r}")
    return created_at, person_id


_PERSON_COLUMNS = "person_id, key_version, external_id, metadata, created_at"


class TenantStore:
    """One tenant's persons and sealed face embeddings in a single SQLite file. Synchronous API."""

    def __init__(self, conn: apsw.Connection, path: Path, tenant_id: str, model: str, dim: int) -> None:
        self._conn = conn
        self.path = path
        self.tenant_id = tenant_id
        self.model = model
        self.dim = dim
        tenant, model_bytes = tenant_id.encode("utf-8"), model.encode("utf-8")
        self._aad_prefix = _AAD_DOMAIN + struct.pack(">I", len(tenant)) + tenant
        self._aad_suffix = struct.pack(">I", len(model_bytes)) + model_bytes

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: str | Path, tenant_id: str, model: str, dim: int, *, vfs: str | None = None) -> TenantStore:
        """Open (or create) the tenant's file; `vfs` names an apsw VFS to run it through (the power-loss test)."""
        path = Path(path)
        conn = sqlite.connect(path, vfs=vfs)
        try:
            conn.create_scalar_function("sg_shard", shard_of, 2, deterministic=True)
            conn.execute("PRAGMA temp_store=MEMORY")  # sorts/temp b-trees never spill to a temp file
            # Reading through mmap halves load_all's scan time (no copy into SQLite's page cache); the
            # mapping holds ciphertext only. SQLite caps it at its compile-time maximum.
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            cls._migrate(conn)
            cls._check_or_record_meta(conn, tenant_id, model, dim)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, tenant_id, model, dim)

    @staticmethod
    def _migrate(conn: apsw.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        rebuild = any(step in _REBUILDS for step in range(version, SCHEMA_VERSION))
        if rebuild:  # a no-op inside a transaction: set before it (SQLite's table-rebuild procedure)
            conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(f"schema version {version} is newer than this code ({SCHEMA_VERSION})")
                for step in range(version, SCHEMA_VERSION):
                    MIGRATIONS[step](conn)
                    conn.execute(f"PRAGMA user_version={step + 1}")
                if rebuild and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise StoreError("schema migration broke a foreign key; rolled back")
        finally:
            if rebuild:
                conn.execute("PRAGMA foreign_keys=ON")

    @staticmethod
    def _check_or_record_meta(conn: apsw.Connection, tenant_id: str, model: str, dim: int) -> None:
        with conn:
            meta = dict(conn.execute("SELECT key, value FROM meta"))
            if not meta:
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("tenant_id", tenant_id), ("model", model), ("dim", str(dim)), ("created_at", repr(time.time()))],
                )
                return
        if meta["tenant_id"] != tenant_id:
            raise TenantMismatch(f"store belongs to tenant {meta['tenant_id']!r}, not {tenant_id!r}")
        if meta["model"] != model or int(meta["dim"]) != dim:
            raise ModelMismatch(
                f"store holds {meta['model']!r} embeddings of dim {meta['dim']}, asked for {model!r} dim {dim}"
            )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TenantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim_writer(self, owner: str | None = None, wait_s: float | None = None) -> fence.Claim:
        """Become the file's one writer (tenancy/fence.py): an earlier claimant's writes are refused from now on."""
        return fence.claim(self._conn, self.tenant_id, owner, wait_s)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group many calls into one durable commit (bulk enrolment); nested calls become savepoints."""
        with self._conn:
            yield

    # ------------------------------------------------------------------ persons

    def create_person(self, external_id: str | None, metadata: dict[str, Any], *, keys: PersonKeys,
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
        sealed_metadata = self._seal_field(cipher, person.person_id, personal.METADATA, encoded)
        sealed_external_id = tag = None
        if external_id is not None:
            sealed_external_id = self._seal_field(cipher, person.person_id, personal.EXTERNAL_ID, external_id)
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
                self._audit(audit and audit.with_counts(persons=1))
        except apsw.ConstraintError as exc:
            raise DuplicateExternalId(f"external id {external_id!r} already exists") from exc
        return person

    def has_person(self, person_id: str) -> bool:
        """Whether the person exists (nothing decrypted)."""
        return self._conn.execute("SELECT 1 FROM persons WHERE person_id = ?", (person_id,)).fetchone() is not None

    def get_person(self, person_id: str, *, keys: PersonKeys) -> Person | None:
        row = self._conn.execute(f"SELECT {_PERSON_COLUMNS} FROM persons WHERE person_id = ?", (person_id,)).fetchone()
        return self._person(row, keys) if row else None

    def get_person_by_external_id(self, external_id: str, *, keys: PersonKeys) -> Person | None:
        row = self._find_external_id(external_id, keys)
        return self._person(row, keys) if row else None

    def list_persons(self, limit: int, cursor: str | None = None, *, keys: PersonKeys) -> tuple[list[Person], str | None]:
        """Persons in creation order; pass the returned cursor to get the next page (None = last page)."""
        if limit < 1:
            raise ValueError("limit must be >= 1")
        sql = f"SELECT {_PERSON_COLUMNS} FROM persons"
        params: tuple = ()
        if cursor is not None:
            sql += " WHERE (created_at, person_id) > (?, ?)"
            params = _decode_cursor(cursor)
        sql += " ORDER BY created_at, person_id LIMIT ?"
        # Fetch one extra row to know whether another page exists without a second query.
        rows = self._conn.execute(sql, (*params, limit + 1)).fetchall()
        persons = [self._person(row, keys) for row in rows[:limit]]
        next_cursor = _encode_cursor(persons[-1].created_at, persons[-1].person_id) if len(rows) > limit else None
        return persons, next_cursor

    def external_ids(self, keys: PersonKeys, person_ids: set[str] | None = None) -> dict[str, str | None]:
        """{person id: external id} of every person (of `person_ids` when given); metadata is not decrypted."""
        out: dict[str, str | None] = {}
        for person_id, version, sealed in self._conn.execute("SELECT person_id, key_version, external_id FROM persons"):
            if person_ids is None or person_id in person_ids:
                out[person_id] = self._open_field(keys, person_id, version, personal.EXTERNAL_ID, sealed)
        return out

    def person_key_versions(self) -> dict[int, int]:
        """{content-key version: persons sealed under it}; 0 counts persons not sealed yet (legacy rows)."""
        return dict(self._conn.execute("SELECT key_version, count(*) FROM persons GROUP BY key_version"))

    def seal_legacy_persons(self, keys: PersonKeys, batch_size: int = 500) -> int:
        """Seal the persons written in clear before schema v3 (run at activation); returns how many."""
        done = 0
        for done, _ in self._reseal_persons(keys, "key_version = 0", (), batch_size):
            pass
        return done

    def reencrypt_persons(self, keys: PersonKeys, batch_size: int = 500) -> Iterator[tuple[int, int]]:
        """Re-seal every person not under the current content key and re-compute its blind-index tag under the
        new version's blind-index key, `batch_size` per transaction; yields (done, total) after each batch."""
        version = keys.current().key_version
        return self._reseal_persons(keys, "key_version != ?", (version,), batch_size)

    def _reseal_persons(self, keys: PersonKeys, where: str, params: tuple, batch_size: int) -> Iterator[tuple[int, int]]:
        cipher = keys.current()
        done = 0
        while True:
            with self._conn:
                remaining = self._conn.execute(f"SELECT count(*) FROM persons WHERE {where}", params).fetchone()[0]
                if remaining == 0:
                    break
                batch = self._conn.execute(f"SELECT {_PERSON_COLUMNS} FROM persons WHERE {where} LIMIT ?",
                                           (*params, batch_size)).fetchall()
                updates = []
                for row in batch:
                    person = self._person(row, keys)
                    sealed_external_id = tag = None
                    if person.external_id is not None:
                        sealed_external_id = self._seal_field(cipher, person.person_id, personal.EXTERNAL_ID, person.external_id)
                        tag = keys.blind_index(cipher.key_version, person.external_id)
                    encoded = json.dumps(person.metadata, sort_keys=True, allow_nan=False)
                    updates.append((cipher.key_version, tag, sealed_external_id,
                                    self._seal_field(cipher, person.person_id, personal.METADATA, encoded), person.person_id))
                self._conn.executemany(
                    "UPDATE persons SET key_version = ?, blind_index = ?, external_id = ?, metadata = ? WHERE person_id = ?",
                    updates)
            done += len(batch)
            yield done, done + remaining - len(batch)
        if done:
            self.checkpoint()  # the WAL held the rows as they were (in clear, for legacy rows)

    def _person_aad(self, person_id: str, field: str) -> bytes:
        return personal.field_aad(self.tenant_id, person_id, field)

    def _seal_field(self, cipher, person_id: str, field: str, value: str) -> bytes:
        return personal.pack(cipher.seal(value.encode("utf-8"), aad=self._person_aad(person_id, field)))

    def _open_field(self, keys: PersonKeys, person_id: str, version: int, field: str, stored) -> str | None:
        if stored is None:
            return None
        if version == 0:  # written before schema v3, not sealed yet (see seal_legacy_persons)
            return stored
        try:
            plaintext = keys.cipher(version).open(personal.unpack(stored, version), aad=self._person_aad(person_id, field))
        except InvalidRecord as exc:
            raise CorruptPerson(person_id) from exc
        return plaintext.decode("utf-8")

    def _person(self, row: tuple, keys: PersonKeys) -> Person:
        person_id, version, external_id, metadata, created_at = row
        return Person(person_id, self._open_field(keys, person_id, version, personal.EXTERNAL_ID, external_id),
                      json.loads(self._open_field(keys, person_id, version, personal.METADATA, metadata)), created_at)

    def _find_external_id(self, external_id: str, keys: PersonKeys) -> tuple | None:
        """The person row whose external id is `external_id`: its blind-index tag under each content-key version
        in use (one, two during a rotation; each found by the index), or, for legacy rows, the clear value."""
        version = self._conn.execute("SELECT min(key_version) FROM persons WHERE key_version > 0").fetchone()[0]
        while version is not None:
            row = self._conn.execute(f"SELECT {_PERSON_COLUMNS} FROM persons WHERE blind_index = ? AND key_version = ?",
                                     (keys.blind_index(version, external_id), version)).fetchone()
            if row is not None:
                return row
            version = self._conn.execute("SELECT min(key_version) FROM persons WHERE key_version > ?", (version,)).fetchone()[0]
        return self._conn.execute(f"SELECT {_PERSON_COLUMNS} FROM persons WHERE key_version = 0 AND external_id = ?",
                                  (external_id,)).fetchone()

    def delete_person(self, person_id: str, *, audit: AuditRecord | None = None) -> list[str]:
        """Delete a person and (by cascade) their faces; returns the deleted face ids."""
        with self._conn:
            face_ids = [r[0] for r in self._conn.execute("SELECT face_id FROM faces WHERE person_id = ?", (person_id,))]
            self._conn.execute("DELETE FROM persons WHERE person_id = ?", (person_id,))
            if self._conn.changes() == 0:
                raise NotFound(f"person {person_id} does not exist")
            self._audit(audit and audit.with_counts(persons=1, faces=len(face_ids)))
        self.checkpoint()
        return face_ids

    # ------------------------------------------------------------------ faces

    def _seal(self, face_id: str, embedding: np.ndarray, cipher: RecordCipher) -> SealedRecord:
        return self._seal_vector(embedding, cipher, self._face_aad(face_id))

    def _seal_vector(self, embedding: np.ndarray, cipher: RecordCipher, aad: bytes) -> SealedRecord:
        vector = np.asarray(embedding)
        if vector.shape != (self.dim,):
            raise ValueError(f"embedding shape {vector.shape} != ({self.dim},)")
        if not np.isfinite(vector).all():
            raise ValueError("embedding contains NaN or infinity")
        return cipher.seal(vector.astype(VECTOR_DTYPE, copy=False).tobytes(), aad=aad)

    def add_face(
        self, person_id: str, embedding: np.ndarray, cipher: RecordCipher, det_score: float, quality: float,
        *, audit: AuditRecord | None = None, crop: np.ndarray | None = None,
    ) -> FaceRecord:
        """Seal and insert one embedding (and its aligned crop, when kept); durable when it returns."""
        return self.add_faces(person_id, [embedding], cipher, [det_score], [quality], audit=audit,
                              crops=None if crop is None else [crop])[0]

    def add_faces(
        self,
        person_id: str,
        embeddings: Sequence[np.ndarray] | np.ndarray,
        cipher: RecordCipher,
        det_scores: Sequence[float],
        qualities: Sequence[float],
        *,
        audit: AuditRecord | None = None,
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
        rows: list[tuple] = []
        for embedding, det_score, quality in zip(embeddings, det_scores, qualities):
            face_id = uuid.uuid4().hex
            sealed = self._seal(face_id, embedding, cipher)
            records.append(FaceRecord(face_id, person_id, sealed.key_version, float(det_score), float(quality), now))
            rows.append((face_id, person_id, sealed.ciphertext, sealed.nonce, sealed.key_version, float(det_score), float(quality), now))
        crop_rows = [(face_id, *self._seal_crop(face_id, crop, cipher)) for (face_id, *_), crop in zip(rows, crops)
                     if crop is not None]
        with self._conn:
            if self._conn.execute("SELECT 1 FROM persons WHERE person_id = ?", (person_id,)).fetchone() is None:
                raise NotFound(f"person {person_id} does not exist")
            self._conn.executemany(
                "INSERT INTO faces (face_id, person_id, ciphertext, nonce, key_version, det_score, quality, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if crop_rows:
                self._conn.executemany("INSERT INTO face_crops (face_id, ciphertext, nonce, key_version) VALUES (?, ?, ?, ?)",
                                       crop_rows)
            self._audit(audit and audit.with_counts(faces=len(rows), **({"crops": len(crop_rows)} if crop_rows else {})))
        return records

    # ------------------------------------------------------------------ kept crops and model migration
    def _crop_aad(self, face_id: str) -> bytes:
        return record_aad_domain(_CROP_AAD_DOMAIN, self.tenant_id, face_id)

    def _seal_crop(self, face_id: str, crop: np.ndarray, cipher: RecordCipher) -> tuple[bytes, bytes, int]:
        sealed = cipher.seal(encode_crop(crop), aad=self._crop_aad(face_id))
        return sealed.ciphertext, sealed.nonce, sealed.key_version

    def crop_counts(self) -> dict[str, int]:
        """Faces, and how many of them have a kept crop (nothing decrypted)."""
        faces, kept = self._conn.execute(
            "SELECT count(*), count(c.face_id) FROM faces f LEFT JOIN face_crops c USING (face_id)").fetchone()
        return {"faces": faces, "with_crop": kept}

    def load_crops(self, face_ids: Sequence[str], cipher_for_version: Callable[[int], RecordCipher]) -> dict[str, np.ndarray]:
        """Decrypted kept crops of these faces (those that have one), in memory only."""
        out: dict[str, np.ndarray] = {}
        for face_id in face_ids:
            row = self._conn.execute("SELECT ciphertext, nonce, key_version FROM face_crops WHERE face_id = ?",
                                     (face_id,)).fetchone()
            if row is None:
                continue
            try:
                plaintext = cipher_for_version(row[2]).open(SealedRecord(row[1], row[0], row[2]), aad=self._crop_aad(face_id))
            except InvalidRecord as exc:
                raise CorruptRecord(face_id) from exc
            out[face_id] = decode_crop(plaintext)
        return out

    def shadow_missing(self, model: str, limit: int) -> tuple[list[str], int, int]:
        """(up to `limit` face ids with a kept crop but no shadow vector for `model`, faces with no shadow
        vector for `model` at all, faces of those without a kept crop). One read snapshot."""
        with self._conn:
            missing, no_crop = self._conn.execute(
                "SELECT count(*), count(*) - count(c.face_id) FROM faces f LEFT JOIN face_shadow s"
                " ON s.face_id = f.face_id AND s.model = ? LEFT JOIN face_crops c ON c.face_id = f.face_id"
                " WHERE s.face_id IS NULL", (model,)).fetchone()
            ids = [r[0] for r in self._conn.execute(
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
            sealed = cipher.seal(vector.tobytes(), aad=record_aad(self.tenant_id, face_id, model))
            rows.append((face_id, model, sealed.ciphertext, sealed.nonce, sealed.key_version, face_id))
        with self._conn:
            before = self._conn.total_changes()
            self._conn.executemany(
                "INSERT OR REPLACE INTO face_shadow (face_id, model, ciphertext, nonce, key_version)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM faces WHERE face_id = ?)", rows)
            return self._conn.total_changes() - before

    def reencrypt_kept(self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher,
                       batch_size: int = 500) -> int:
        """One batch of a content-key rotation over the kept crops and shadow vectors (one transaction);
        returns how many of them are still under another version afterwards."""
        version = new_cipher.key_version
        with self._conn:
            for table, aad in (("face_crops", lambda f, m: self._crop_aad(f)),
                               ("face_shadow", lambda f, m: record_aad(self.tenant_id, f, m))):
                model = "model" if table == "face_shadow" else "NULL"
                rows = self._conn.execute(f"SELECT face_id, {model}, nonce, ciphertext, key_version FROM {table}"
                                          " WHERE key_version != ? LIMIT ?", (version, batch_size)).fetchall()
                updates = []
                for face_id, row_model, nonce, ciphertext, key_version in rows:
                    try:
                        plaintext = cipher_for_version(key_version).open(SealedRecord(nonce, ciphertext, key_version),
                                                                         aad=aad(face_id, row_model))
                    except InvalidRecord as exc:
                        raise CorruptRecord(face_id) from exc
                    sealed = new_cipher.seal(plaintext, aad=aad(face_id, row_model))
                    updates.append((sealed.ciphertext, sealed.nonce, sealed.key_version, face_id))
                self._conn.executemany(f"UPDATE {table} SET ciphertext = ?, nonce = ?, key_version = ? WHERE face_id = ?", updates)
            return sum(self._conn.execute(f"SELECT count(*) FROM {table} WHERE key_version != ?", (version,)).fetchone()[0]
                       for table in ("face_crops", "face_shadow"))

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
                "UPDATE faces SET (ciphertext, nonce, key_version) = (SELECT ciphertext, nonce, key_version FROM"
                " face_shadow s WHERE s.face_id = faces.face_id AND s.model = ?)", (model,))
            switched = self._conn.changes()
            self._conn.execute("DELETE FROM face_shadow")
            self._conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [(model, "model"), (str(dim), "dim")])
            self._audit(audit and audit.with_counts(faces=switched))
        self.checkpoint()  # the WAL held the old model's vectors
        self.model, self.dim = model, dim
        model_bytes = model.encode("utf-8")
        self._aad_suffix = struct.pack(">I", len(model_bytes)) + model_bytes
        return switched

    def clear_shadow(self) -> None:
        """An abandoned migration's shadow vectors go (e.g. a new migration to another target)."""
        with self._conn:
            self._conn.execute("DELETE FROM face_shadow")
        self.checkpoint()

    def delete_face(self, person_id: str, face_id: str, *, audit: AuditRecord | None = None) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM faces WHERE face_id = ? AND person_id = ?", (face_id, person_id))
            if self._conn.changes() == 0:
                raise NotFound(f"face {face_id} of person {person_id} does not exist")
            self._audit(audit and audit.with_counts(faces=1))
        self.checkpoint()

    def delete_faces(self, face_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        """Delete many faces (retention) in one transaction, with one WAL truncation rather than one each."""
        if not face_ids:
            return
        with self._conn:
            self._conn.executemany("DELETE FROM faces WHERE face_id = ?", [(face_id,) for face_id in face_ids])
            self._audit(audit and audit.with_counts(deleted=len(face_ids)))
        self.checkpoint()

    def faces_of(self, person_id: str) -> list[FaceRecord]:
        return self._face_records("person_id = ?", (person_id,))

    def faces_created_before(self, cutoff: float) -> list[FaceRecord]:
        """Faces older than `cutoff` (unix time): what a retention period expires."""
        return self._face_records("created_at < ?", (cutoff,))

    def _face_records(self, where: str, params: tuple) -> list[FaceRecord]:
        rows = self._conn.execute(
            "SELECT face_id, person_id, key_version, det_score, quality, created_at FROM faces"
            f" WHERE {where} ORDER BY created_at, face_id",
            params,
        )
        return [FaceRecord(*row) for row in rows]

    # ------------------------------------------------------------------ rejections ("not this person")

    def add_rejections(self, person_id: str, embeddings: Sequence[np.ndarray] | np.ndarray, cipher: RecordCipher,
                       source: str, *, audit: AuditRecord | None = None) -> list[str]:
        """Seal and insert negative examples of one person in one durable transaction; returns their ids."""
        now = time.time()
        rows = []
        for embedding in embeddings:
            rejection_id = uuid.uuid4().hex
            sealed = self._seal_vector(embedding, cipher, self._rejection_aad(rejection_id))
            rows.append((rejection_id, person_id, sealed.ciphertext, sealed.nonce, sealed.key_version, source, now))
        with self._conn:
            if not self.has_person(person_id):
                raise NotFound(f"person {person_id} does not exist")
            self._conn.executemany(
                "INSERT INTO rejections (rejection_id, person_id, ciphertext, nonce, key_version, source, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._audit(audit and audit.with_counts(rejections=len(rows)).with_ids(person_id=person_id))
        return [row[0] for row in rows]

    def rejections_of(self, person_id: str) -> list[dict]:
        """The person's rejections (ids, source, time; nothing decrypted)."""
        return [{"rejection_id": r[0], "source": r[1], "created_at": r[2]} for r in self._conn.execute(
            "SELECT rejection_id, source, created_at FROM rejections WHERE person_id = ? ORDER BY created_at, rejection_id",
            (person_id,))]

    def delete_rejection(self, person_id: str, rejection_id: str, *, audit: AuditRecord | None = None) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM rejections WHERE rejection_id = ? AND person_id = ?", (rejection_id, person_id))
            if self._conn.changes() == 0:
                raise NotFound(f"rejection {rejection_id} of person {person_id} does not exist")
            self._audit(audit and audit.with_counts(rejections=1).with_ids(person_id=person_id))
        self.checkpoint()

    def rejections_created_before(self, cutoff: float) -> list[str]:
        """Rejections older than `cutoff`: they expire with the tenant's retention period, like faces."""
        return [r[0] for r in self._conn.execute("SELECT rejection_id FROM rejections WHERE created_at < ?", (cutoff,))]

    def load_rejections(self, cipher_for_version: Callable[[int], RecordCipher]) -> LoadedFaces:
        """Every rejection decrypted (all of them on every shard: they are few, and each shard vetoes its own
        matches with the whole set); row i of `vectors` is face_ids[i] (the rejection id) of person_ids[i]."""
        row_bytes = self.dim * VECTOR_DTYPE.itemsize
        with self._conn:
            rows = self._conn.execute(
                "SELECT rejection_id, person_id, nonce, ciphertext, key_version FROM rejections ORDER BY rejection_id").fetchall()
        vectors = np.empty((len(rows), self.dim), dtype=VECTOR_DTYPE)
        for i, (rejection_id, _, nonce, ciphertext, version) in enumerate(rows):
            try:
                plaintext = cipher_for_version(version).open(SealedRecord(nonce, ciphertext, version), aad=self._rejection_aad(rejection_id))
            except InvalidRecord as exc:
                raise CorruptRecord(rejection_id) from exc
            if len(plaintext) != row_bytes:
                raise CorruptRecord(rejection_id)
            vectors[i] = np.frombuffer(plaintext, VECTOR_DTYPE)
        return LoadedFaces([r[0] for r in rows], [r[1] for r in rows], vectors)

    def delete_rejections(self, rejection_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        """Delete many rejections (retention) in one transaction and truncate the WAL."""
        if not rejection_ids:
            return
        with self._conn:
            self._conn.executemany("DELETE FROM rejections WHERE rejection_id = ?", [(r,) for r in rejection_ids])
            self._audit(audit and audit.with_counts(rejections=len(rejection_ids)))
        self.checkpoint()

    def rejection_count(self) -> int:
        """Rejections are vectors of the tenant's model with no crop kept: a model migration cannot carry them.
        (Files migrate forward on open, so the table exists.)"""
        return self._conn.execute("SELECT count(*) FROM rejections").fetchone()[0]

    def rejection_ids(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT rejection_id FROM rejections")}

    def _rejection_aad(self, rejection_id: str) -> bytes:
        tenant, model, rid = self.tenant_id.encode("utf-8"), self.model.encode("utf-8"), rejection_id.encode("utf-8")
        return b"".join([_REJECTION_AAD_DOMAIN, *(struct.pack(">I", len(f)) + f for f in (tenant, rid, model))])

    # ------------------------------------------------------------------ corrections: merge, move

    def merge_persons(self, person_id: str, merged_person_id: str, *, audit: AuditRecord | None = None) -> dict:
        """`merged_person_id`'s faces and rejections become `person_id`'s and the merged person is deleted, in
        one transaction. Face and rejection seals bind their own ids, not the person's: nothing is re-sealed."""
        with self._conn:
            for pid in (person_id, merged_person_id):  # unknown ids first: 404 says nothing about anyone else's
                if not self.has_person(pid):
                    raise NotFound(f"person {pid} does not exist")
            if person_id == merged_person_id:
                raise SamePerson(f"cannot merge person {person_id} into itself")
            face_ids = [r[0] for r in self._conn.execute("SELECT face_id FROM faces WHERE person_id = ?", (merged_person_id,))]
            self._conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            self._conn.execute("UPDATE rejections SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            rejections = self._conn.changes()
            # A photo imported for both keeps the surviving person's record; the merged one's goes with it.
            self._conn.execute("UPDATE OR IGNORE import_photos SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            self._conn.execute("DELETE FROM persons WHERE person_id = ?", (merged_person_id,))
            self._audit(audit and audit.with_counts(faces=len(face_ids), rejections=rejections, persons=1)
                        .with_ids(person_id=person_id, merged_person_id=merged_person_id))
        self.checkpoint()  # the merged person's sealed fields leave the WAL
        return {"face_ids": face_ids, "rejections": rejections}

    def move_face(self, person_id: str, face_id: str, to_person_id: str, *, audit: AuditRecord | None = None) -> None:
        """Face `face_id` of `person_id` becomes `to_person_id`'s (the seal binds the face id: not re-sealed)."""
        with self._conn:
            if self._conn.execute("SELECT 1 FROM faces WHERE face_id = ? AND person_id = ?", (face_id, person_id)).fetchone() is None:
                raise NotFound(f"face {face_id} of person {person_id} does not exist")
            if not self.has_person(to_person_id):
                raise NotFound(f"person {to_person_id} does not exist")
            if person_id == to_person_id:
                raise SamePerson(f"face {face_id} already belongs to person {person_id}")
            self._conn.execute("UPDATE faces SET person_id = ? WHERE face_id = ?", (to_person_id, face_id))
            self._conn.execute("UPDATE OR IGNORE import_photos SET person_id = ? WHERE face_id = ?", (to_person_id, face_id))
            self._conn.execute("DELETE FROM import_photos WHERE face_id = ? AND person_id != ?", (face_id, to_person_id))
            self._audit(audit and audit.with_counts(faces=1)
                        .with_ids(person_id=person_id, to_person_id=to_person_id, face_id=face_id))

    def face_owner(self, face_id: str) -> str | None:
        """The person a face belongs to (nothing decrypted)."""
        row = self._conn.execute("SELECT person_id FROM faces WHERE face_id = ?", (face_id,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ imported photos (tenancy/bulk_import.py)
    def imported_face(self, person_id: str, tags: Sequence[bytes]) -> str | None:
        """The face imported from a photo of this person whose keyed tag is one of `tags`, while it is enrolled."""
        if not tags:
            return None
        row = self._conn.execute(f"SELECT face_id FROM import_photos WHERE person_id = ? AND photo_tag IN ({','.join('?' * len(tags))})",
                                 (person_id, *tags)).fetchone()
        return row[0] if row else None

    def record_import(self, person_id: str, face_id: str, tag: bytes, key_version: int) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO import_photos (person_id, photo_tag, key_version, face_id) VALUES (?, ?, ?, ?)",
                               (person_id, tag, key_version, face_id))

    def import_key_versions(self) -> list[int]:
        return [row[0] for row in self._conn.execute("SELECT DISTINCT key_version FROM import_photos ORDER BY key_version")]

    def count_faces(self) -> int:
        return self._conn.execute("SELECT count(*) FROM faces").fetchone()[0]

    def key_versions_in_use(self) -> dict[int, int]:
        """{content-key version: sealed vectors under it}, faces and rejections together (what a rotation re-seals)."""
        return dict(self._conn.execute("SELECT key_version, count(*) FROM (SELECT key_version FROM faces"
                                       " UNION ALL SELECT key_version FROM rejections) GROUP BY key_version"))

    # ------------------------------------------------------------------ bulk decrypt / rotation

    def load_all(
        self, cipher_for_version: Callable[[int], RecordCipher], shard: tuple[int, int] | None = None
    ) -> LoadedFaces:
        """Decrypt every embedding into one float32 [n, dim] array (for building the in-memory index).

        `shard=(k, n)` keeps only the faces with `shard_of(face_id, n) == k`; the filter runs in SQL, before
        anything is decrypted, so a shard never opens (or holds) another shard's vectors."""
        ciphers: dict[int, RecordCipher] = {}
        row_bytes = self.dim * VECTOR_DTYPE.itemsize
        where, params = self._shard_filter(shard)
        with self._conn:  # one read snapshot: the count and the rows agree even with concurrent writers
            n = self._conn.execute(f"SELECT count(*) FROM faces{where}", params).fetchone()[0]
            buffer = bytearray(n * row_bytes)
            view = memoryview(buffer)
            face_ids: list[str] = [""] * n
            person_ids: list[str] = [""] * n
            rows = self._conn.execute(f"SELECT face_id, person_id, nonce, ciphertext, key_version FROM faces{where}", params)
            i = 0
            while chunk := list(islice(rows, _DECRYPT_CHUNK)):
                # Bulk decryption per key version (one version, outside a rotation).
                by_version: dict[int, list[int]] = {}
                for j, row in enumerate(chunk):
                    by_version.setdefault(row[4], []).append(j)
                for key_version, positions in by_version.items():
                    cipher = ciphers.get(key_version)
                    if cipher is None:
                        cipher = ciphers[key_version] = cipher_for_version(key_version)
                    try:
                        plaintexts = cipher.open_many([(chunk[j][2], chunk[j][3], key_version) for j in positions],
                                                      [self._face_aad(chunk[j][0]) for j in positions])
                    except InvalidRecord as exc:
                        raise CorruptRecord(chunk[positions[exc.index or 0]][0]) from exc
                    for j, plaintext in zip(positions, plaintexts):
                        if len(plaintext) != row_bytes:
                            raise CorruptRecord(chunk[j][0])
                        view[(i + j) * row_bytes : (i + j + 1) * row_bytes] = plaintext
                for j, row in enumerate(chunk):
                    face_ids[i + j] = row[0]
                    person_ids[i + j] = row[1]
                i += len(chunk)
        vectors = np.frombuffer(buffer, dtype=VECTOR_DTYPE).reshape(n, self.dim)
        return LoadedFaces(face_ids, person_ids, vectors)

    def face_ids(self, shard: tuple[int, int] | None = None) -> set[str]:
        """Ids of the stored faces (of one shard when given); nothing is decrypted."""
        where, params = self._shard_filter(shard)
        return {row[0] for row in self._conn.execute(f"SELECT face_id FROM faces{where}", params)}

    @staticmethod
    def _shard_filter(shard: tuple[int, int] | None) -> tuple[str, tuple]:
        if shard is None or shard[1] <= 1:
            return "", ()
        k, n = shard
        if not 0 <= k < n:
            raise ValueError(f"shard {k} out of range for {n} shards")
        return " WHERE sg_shard(face_id, ?) = ?", (n, k)

    def _face_aad(self, face_id: str) -> bytes:
        """Same bytes as record_aad(tenant_id, face_id, model), from a precomputed prefix and suffix."""
        encoded = face_id.encode("utf-8")
        return self._aad_prefix + struct.pack(">I", len(encoded)) + encoded + self._aad_suffix

    def reencrypt(
        self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher, batch_size: int = 500,
        *, audit: AuditRecord | None = None,
    ) -> Iterator[tuple[int, int]]:
        """Re-seal every record not under `new_cipher`'s version, `batch_size` rows per transaction.

        Yields (done, total) after each committed batch; other reads and writes interleave between
        batches. Ends with a WAL truncation so the records under the retired key do not linger there.
        """
        done = 0
        # Faces, then rejections (both sealed vectors under the content key; each table binds its own ids).
        tables = (("faces", "face_id", self._face_aad), ("rejections", "rejection_id", self._rejection_aad))
        while True:
            with self._conn:
                counts = [self._conn.execute(f"SELECT count(*) FROM {table} WHERE key_version != ?",
                                             (new_cipher.key_version,)).fetchone()[0] for table, _, _ in tables]
                remaining = sum(counts)
                if remaining == 0:
                    break
                table, id_column, aad_of = next(t for t, n in zip(tables, counts) if n)
                batch = self._conn.execute(
                    f"SELECT {id_column}, nonce, ciphertext, key_version FROM {table} WHERE key_version != ? LIMIT ?",
                    (new_cipher.key_version, batch_size),
                ).fetchall()
                updates = []
                for row_id, nonce, ciphertext, key_version in batch:
                    aad = aad_of(row_id)
                    try:
                        plaintext = cipher_for_version(key_version).open(SealedRecord(nonce, ciphertext, key_version), aad=aad)
                    except InvalidRecord as exc:
                        raise CorruptRecord(row_id) from exc
                    sealed = new_cipher.seal(plaintext, aad=aad)
                    updates.append((sealed.ciphertext, sealed.nonce, sealed.key_version, row_id))
                self._conn.executemany(f"UPDATE {table} SET ciphertext = ?, nonce = ?, key_version = ? WHERE {id_column} = ?", updates)
                self._audit(audit and audit.with_counts(**{table: len(updates)}, version=new_cipher.key_version,
                                                        remaining=remaining - len(updates)))
            done += len(batch)
            yield done, done + remaining - len(batch)
        self.checkpoint()

    # ------------------------------------------------------------------ audit (tenancy/audit.py)
    @property
    def chain_id(self) -> str:
        return audit_chain.tenant_chain_id(self.tenant_id)

    def _audit(self, record: AuditRecord | None) -> None:
        """Chain `record` inside the caller's open transaction: it commits (or rolls back) with the write."""
        if record is not None:
            audit_chain.append(self._conn, self.chain_id, record.body(time.time()))

    def record_audit(self, record: AuditRecord) -> None:
        """An audit entry on its own (a read, a refused write, an admin action on the tenant); durable on return."""
        with self._conn:
            self._audit(record)

    def audit_events(self, since: int = 0, limit: int = 100) -> list[dict]:
        return audit_chain.events(self._conn, since, limit)

    def checkpoint_audit(self, mac: Callable[[bytes], bytes] | None, policy: chain.CheckpointPolicy,
                         *, force: bool = False) -> chain.Checkpoint | None:
        """MAC the audit chain's head when `policy` says so (or `force`, if it moved since the last one)."""
        return audit_chain.checkpoint_if_due(self._conn, self.chain_id, mac, policy, force=force)

    def verify_audit(self, verify_tag: Callable[[bytes, bytes], bool]) -> chain.VerifyResult:
        return audit_chain.verify(self._conn, self.chain_id, verify_tag)

    # ------------------------------------------------------------------ physical hygiene

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it to zero bytes; False if a reader blocked it."""
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("WAL checkpoint of %s blocked by a reader; old pages stay in the WAL until the next one", self.path)
        return not busy

    def vacuum(self) -> None:
        """Rebuild the file compactly (drops freed pages) and truncate the WAL."""
        self._conn.execute("VACUUM")
        self.checkpoint()
