"""The tenant file's schema and its forward migrations, applied on open; the file's binding (tenant, model, dim).

Migration i brings the schema from user_version i to i + 1. Append only; never edit a shipped step: files
written by every earlier version migrate forward when they are opened.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

import apsw

from kms import records
from tenancy import audit_log
from tenancy import bulk_import
from tenancy.store.errors import ModelMismatch, StoreError, TenantMismatch


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
    # The tenant's audit chain and its MACed checkpoints, in the same file as what they record (tenancy/audit_log.py).
    conn.execute(audit_log.AUDIT_TABLES)


def _migrate_v3(conn: apsw.Connection) -> None:
    # Personal fields sealed (tenancy/personal.py). The table is rebuilt (the clear UNIQUE external_id and the
    # JSON CHECK on metadata cannot be dropped in place); `migrate` turns foreign keys off around it so dropping
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


def _migrate_v4(conn: apsw.Connection) -> None:
    # Keyed tags of imported photos, so a re-import skips what is enrolled (tenancy/bulk_import.py).
    conn.execute(bulk_import.PHOTO_TABLE)


def _migrate_v5(conn: apsw.Connection) -> None:
    # Rejections: "not this person" negative examples of a person, sealed like faces (AAD: tenant, rejection
    # id, model, under their own domain). A probe closer to one of a person's rejections than to all of the
    # person's faces does not match that person (tenancy/index/). Deleted with the person (cascade).
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


# The vector tables whose (ciphertext, nonce, key_version) columns v7 turns into (sealed, key_version).
_SEALED_VECTOR_TABLES = ("faces", "rejections", "face_crops", "face_shadow")


def _migrate_v7(conn: apsw.Connection) -> None:
    # One sealed form (kms/records.py): every sealed value becomes one self-describing token, re-packed from its
    # parts (nothing is decrypted, no key is needed). Vectors: `ciphertext` renamed `sealed` and rewritten as the
    # token, `nonce` dropped. Persons' fields (nonce | ciphertext, key version in the row): the token; legacy
    # rows (key version 0, clear values awaiting sealing) stay as they are. Each table keeps its indexed
    # key_version column beside the token: the rotation's queries find a version's rows by that index (SQLite
    # has no built-in to read an integer out of a blob, so an index on the token's header would need a function
    # of ours in every reader of the file).
    conn.create_scalar_function("sg_token", records.token, 3, deterministic=True)
    for table in _SEALED_VECTOR_TABLES:
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN ciphertext TO sealed;"
                     f" UPDATE {table} SET sealed = sg_token(key_version, nonce, sealed);"
                     f" ALTER TABLE {table} DROP COLUMN nonce;")
    n = records.NONCE_BYTES
    conn.execute(f"UPDATE persons SET metadata = sg_token(key_version, substr(metadata, 1, {n}), substr(metadata, {n + 1})),"
                 f" external_id = CASE WHEN external_id IS NULL THEN NULL"
                 f" ELSE sg_token(key_version, substr(external_id, 1, {n}), substr(external_id, {n + 1})) END"
                 " WHERE key_version > 0")


# v6 is the model-migration step (kept crops, shadow vectors); v5 (rejections) is a concurrent change.
MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (_migrate_v1, _migrate_v2, _migrate_v3, _migrate_v4, _migrate_v5,
                                                             _migrate_v6, _migrate_v7)
SCHEMA_VERSION = len(MIGRATIONS)
# Migrations that rebuild a table referenced by a foreign key (index into MIGRATIONS): run with foreign keys off.
_REBUILDS = {2}


def migrate(conn: apsw.Connection) -> None:
    """Bring the file's schema to SCHEMA_VERSION in one transaction (refuses a file newer than this code)."""
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


def check_or_record_meta(conn: apsw.Connection, tenant_id: str, model: str, dim: int) -> None:
    """A new file records whose it is (tenant, model, dim); an existing one must be that tenant's, that model's."""
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
        raise ModelMismatch(f"store holds {meta['model']!r} embeddings of dim {meta['dim']}, asked for {model!r} dim {dim}")


def rebind_meta(conn: apsw.Connection, model: str, dim: int) -> None:
    """The file's model binding changes (a model migration's switch); inside the caller's transaction."""
    conn.executemany("UPDATE meta SET value = ? WHERE key = ?", [(model, "model"), (str(dim), "dim")])


def shard_of(face_id: str, shards: int) -> int:
    """The shard (0 = the primary) holding a face in a tenant index split `shards` ways; stable for a face id.

    Face ids are uuid4 hex, whose first 32 bits are random: `int(face_id[:8], 16) % shards`. Ids that are
    not hex (never written by this store) fall back to a CRC32 of the id, still stable. Registered on the
    connection as the SQL function `sg_shard(face_id, shards)`."""
    if shards <= 1:
        return 0
    try:
        return int(face_id[:8], 16) % shards
    except ValueError:
        return zlib.crc32(face_id.encode("utf-8")) % shards
