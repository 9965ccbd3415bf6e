"""Personal fields at rest (issue 17 §1): external ids and metadata sealed per field, found through a keyed blind
index that follows content-key rotation, and stores written in clear by older versions migrated and sealed.
Real TenantStore files, real key hierarchy (kms.Keyring with the local provider), raw file bytes searched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw
import numpy as np
import pytest

from kms import Keyring
from kms.errors import KeyNotFound
from kms.providers.local import LocalKeyProvider
from kms.records import HEADER_BYTES, RecordCipher
from tenancy import store as store_module
from tenancy.personal import BLIND_INDEX_PURPOSE, PersonKeys, blind_index
from tenancy.store import CorruptPerson, DuplicateExternalId, TenantStore

DIM, MODEL = 16, "arcface-r100"


@pytest.fixture
def keyring(tmp_path: Path):
    ring = Keyring(LocalKeyProvider(tmp_path / "keys" / "root.key"), tmp_path / "keys" / "keystore.db")
    for tenant in ("t1", "t2"):
        ring.create_tenant(tenant)
    yield ring
    ring.close()


def keys_of(keyring: Keyring, tenant: str) -> PersonKeys:
    return PersonKeys(lambda version, purpose: keyring.data_key(tenant, purpose, version))


def open_store(tmp_path: Path, tenant: str = "t1") -> TenantStore:
    return TenantStore.open(tmp_path / "tenants" / tenant / "embeddings.db", tenant, MODEL, DIM)


def raw_files(store: TenantStore) -> bytes:
    return b"".join(Path(f"{store.path}{suffix}").read_bytes() for suffix in ("", "-wal", "-shm")
                    if Path(f"{store.path}{suffix}").exists())


def forms(value: str) -> list[bytes]:
    """The byte forms a clear value would take in a file: UTF-8, UTF-16 (both orders), JSON-escaped."""
    return [value.encode("utf-8"), value.encode("utf-16-le"), value.encode("utf-16-be"),
            json.dumps(value).encode("ascii")[1:-1]]


def found_in(raw: bytes, values: list[str]) -> list[str]:
    return [v for v in values if any(form in raw for form in forms(v))]


SECRETS = {"ext-Zyx7-Ågot-0042": {"name": "Ågot Quintrell-Varga", "badge": "BDG-998877-secret"},
           "ext-Wqp3-Lönn-0043": {"notes": ["allergic-to-penicillin-xq"], "floor": 7}}


def secret_values() -> list[str]:
    return [*SECRETS, *(v for m in SECRETS.values() for v in json.dumps(m)[1:-1].split('"') if len(v) > 6)]


def test_fields_are_sealed_on_disk_and_read_back_exactly(tmp_path, keyring):
    keys = keys_of(keyring, "t1")
    with open_store(tmp_path) as store:
        created = {ext: store.create_person(ext, meta, keys=keys) for ext, meta in SECRETS.items()}
        anonymous = store.create_person(None, {}, keys=keys)
        assert found_in(raw_files(store), secret_values()) == []  # in the WAL, before any checkpoint
        store.checkpoint()
        assert found_in(raw_files(store), secret_values()) == []  # in the main file
        for ext, person in created.items():
            assert store.get_person(person.person_id, keys=keys) == person
            assert store.get_person_by_external_id(ext, keys=keys) == person
        assert store.get_person(anonymous.person_id, keys=keys).external_id is None
        assert store.get_person_by_external_id("ext-Zyx7-Ågot-004", keys=keys) is None  # exact match only
        assert [p.person_id for p in store.list_persons(10, keys=keys)[0]] == \
            [p.person_id for p in sorted([*created.values(), anonymous], key=lambda p: (p.created_at, p.person_id))]
        with pytest.raises(DuplicateExternalId):
            store.create_person("ext-Zyx7-Ågot-0042", {}, keys=keys)


def test_a_sealed_field_moved_to_another_person_or_field_does_not_open(tmp_path, keyring):
    keys = keys_of(keyring, "t1")
    with open_store(tmp_path) as store:
        a = store.create_person("alice-ext", {"k": "a"}, keys=keys)
        b = store.create_person("bob-ext", {"k": "b"}, keys=keys)
        conn = apsw.Connection(str(store.path))
        sealed_a = conn.execute("SELECT external_id FROM persons WHERE person_id = ?", (a.person_id,)).fetchone()[0]
        conn.execute("UPDATE persons SET external_id = ? WHERE person_id = ?", (sealed_a, b.person_id))
        with pytest.raises(CorruptPerson) as info:
            store.get_person(b.person_id, keys=keys)
        assert info.value.person_id == b.person_id
        conn.execute("UPDATE persons SET metadata = external_id WHERE person_id = ?", (a.person_id,))  # field swap
        with pytest.raises(CorruptPerson):
            store.get_person(a.person_id, keys=keys)
        conn.close()


def test_blind_index_is_keyed_per_tenant(tmp_path, keyring):
    """The same external id in two tenants gets unrelated tags, each the HMAC under its tenant's blind-index key."""
    tags = {}
    for tenant in ("t1", "t2"):
        with open_store(tmp_path, tenant) as store:
            store.create_person("shared-ext-id", {}, keys=keys_of(keyring, tenant))
            tags[tenant] = store._conn.execute("SELECT blind_index FROM persons").fetchone()[0]
        assert tags[tenant] == blind_index(keyring.data_key(tenant, BLIND_INDEX_PURPOSE, 1).key, "shared-ext-id")
    assert tags["t1"] != tags["t2"] and len(tags["t1"]) == 32


def test_rotation_reindexes_and_lookups_hold_throughout(tmp_path, keyring):
    """Re-index on rotation: the blind-index key is a data key of the content-key version, so rotation re-seals
    each person and recomputes its tag under the new version; mid-rotation every id is still found and still
    unique; once the old version is retired, everything reads with fresh keys."""
    ids = [f"rot-ext-{i:03d}" for i in range(7)]
    with open_store(tmp_path) as store:
        persons = {ext: store.create_person(ext, {"i": i}, keys=keys_of(keyring, "t1")) for i, ext in enumerate(ids)}
        before = dict(store._conn.execute("SELECT person_id, blind_index FROM persons"))
        assert keyring.rotate_tenant("t1") == 2
        keys = keys_of(keyring, "t1")
        steps = store.reencrypt_persons(keys, batch_size=3)
        assert next(steps) == (3, 7)
        assert store.person_key_versions() == {1: 4, 2: 3}
        for ext in ids:  # found whichever version it is under
            assert store.get_person_by_external_id(ext, keys=keys) == persons[ext]
        with pytest.raises(DuplicateExternalId):  # unique across versions, not only within one
            for ext in ids:
                store.create_person(ext, {}, keys=keys)
        late = store.create_person("rot-late", {}, keys=keys)  # written under v2 mid-rotation
        assert list(steps) == [(6, 7), (7, 7)]
        assert store.person_key_versions() == {2: 8}
        after = dict(store._conn.execute("SELECT person_id, blind_index FROM persons"))
        assert all(after[p.person_id] != before[p.person_id] for p in persons.values())  # re-indexed
        keyring.retire_version("t1", 1)
        fresh = keys_of(keyring, "t1")
        for ext in ids:
            assert store.get_person_by_external_id(ext, keys=fresh) == persons[ext]
        assert store.get_person_by_external_id("rot-late", keys=fresh) == late
        with pytest.raises(KeyNotFound):  # the old blind-index key is gone with its version
            keyring.data_key("t1", BLIND_INDEX_PURPOSE, 1)


def write_schema_v2_store(path: Path, rows: list[tuple[str, str | None, dict]], cipher: RecordCipher) -> list[str]:
    """A tenant file as the version before sealing wrote it (schema v2: clear external_id and metadata), with a
    face per person; returns the face ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        for step in store_module.MIGRATIONS[:2]:
            step(conn)
        conn.execute("PRAGMA user_version=2")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("tenant_id", "t1"), ("model", MODEL), ("dim", str(DIM)),
                                                             ("created_at", "0")])
        face_ids = []
        for i, (person_id, external_id, metadata) in enumerate(rows):
            conn.execute("INSERT INTO persons VALUES (?, ?, ?, ?)", (person_id, external_id, json.dumps(metadata), float(i)))
            face_id = f"{i:032x}"
            sealed = cipher.seal(np.ones(DIM, "<f4").tobytes(), aad=store_module.record_aad("t1", face_id, MODEL))
            # Schema v2's faces: the ciphertext and the nonce in their own columns (v7 packs them into one token).
            conn.execute("INSERT INTO faces VALUES (?, ?, ?, ?, 1, 0.9, 0.9, ?)",
                         (face_id, person_id, sealed[HEADER_BYTES:], sealed[5:HEADER_BYTES], float(i)))
            face_ids.append(face_id)
    conn.close()
    return face_ids


def test_a_store_written_in_clear_is_migrated_and_sealed(tmp_path, keyring):
    """Migration: opening a schema-v2 file rebuilds the persons table without touching the faces (foreign keys
    off around the rebuild); rows stay readable and unique in clear until `seal_legacy_persons` (what the
    tenant's activation runs) seals them; then the file and its WAL hold none of the clear values."""
    path = tmp_path / "tenants" / "t1" / "embeddings.db"
    rows = [(f"{i:032x}", ext, meta) for i, (ext, meta) in enumerate(SECRETS.items())] + [("f" * 32, None, {"x": 1})]
    cipher = RecordCipher(os.urandom(32), 1)
    face_ids = write_schema_v2_store(path, rows, cipher)
    assert found_in(path.read_bytes(), list(SECRETS)) == list(SECRETS)  # sanity: the old file holds them in clear
    keys = keys_of(keyring, "t1")
    with TenantStore.open(path, "t1", MODEL, DIM) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        assert sorted(store.face_ids()) == sorted(face_ids)  # no cascade from the rebuild
        assert store.person_key_versions() == {0: 3}
        assert store.get_person_by_external_id("ext-Wqp3-Lönn-0043", keys=keys).metadata == SECRETS["ext-Wqp3-Lönn-0043"]
        with pytest.raises(DuplicateExternalId):
            store.create_person("ext-Zyx7-Ågot-0042", {}, keys=keys)
        assert store.seal_legacy_persons(keys) == 3
        assert store.person_key_versions() == {1: 3}
        for person_id, external_id, metadata in rows:
            person = store.get_person(person_id, keys=keys)
            assert (person.external_id, person.metadata) == (external_id, metadata)
            if external_id is not None:
                assert store.get_person_by_external_id(external_id, keys=keys).person_id == person_id
        assert store.seal_legacy_persons(keys) == 0
        assert found_in(raw_files(store), secret_values()) == []
        store.delete_person(rows[0][0])
        assert sorted(store.load_all(lambda version: cipher).face_ids) == sorted(face_ids[1:])
