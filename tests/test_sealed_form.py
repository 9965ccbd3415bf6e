"""One sealed form: a tenant file written by 820bf94 (schema v6, sealed values as separate nonce, ciphertext and
key_version parts) migrates forward on open to one token per value (kms/records.py), nothing decrypted, and every
record reads back through the current code: faces, rejections, kept crops, shadow vectors, persons' sealed fields,
a legacy clear person, the audit chain. The file is rebuilt from its SQL (tests/make_sealed_files.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import apsw
import numpy as np
import pytest

from kms.keyring import DataKey
from kms.records import RecordCipher, key_version_of
from tenancy.personal import PersonKeys
from tenancy.store import TenantStore
from tenancy.store.schema import SCHEMA_VERSION

DATA = Path(__file__).with_name("data")
SQL, CLEAR = DATA / "tenant-820bf94.sql", json.loads((DATA / "tenant-820bf94.json").read_text())
TENANT, MODEL, DIM = CLEAR["tenant_id"], CLEAR["model"], CLEAR["dim"]
SEALED_TABLES = ("faces", "rejections", "face_crops", "face_shadow")


def fixture_key(version: int, purpose: str) -> bytes:
    """tests/make_sealed_files.py's keys (written out again here: that script imports the code of 820bf94)."""
    return hashlib.sha256(f"securegate-fixture/{purpose}/{version}".encode()).digest()


def data_key(version: int | None, purpose: str) -> DataKey:
    version = 2 if version is None else version
    return DataKey(TENANT, purpose, version, fixture_key(version, purpose))


def cipher_for(version: int) -> RecordCipher:
    return data_key(version, "embeddings").cipher()


@pytest.fixture
def legacy_file(tmp_path: Path) -> Path:
    path = tmp_path / "embeddings.db"
    conn = apsw.Connection(str(path))
    conn.execute(SQL.read_text())
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
    conn.close()
    return path


def columns(conn: apsw.Connection, table: str) -> list[str]:
    return [name for _, name, *_ in conn.execute(f"PRAGMA table_info({table})")]


def test_a_v6_file_migrates_to_tokens_and_every_record_reads_back(legacy_file: Path) -> None:
    before = apsw.Connection(str(legacy_file))
    parts = {table: dict(before.execute(f"SELECT rowid, CAST(nonce || ciphertext AS BLOB) FROM {table}")) for table in SEALED_TABLES}
    persons_before = {pid: (version, metadata) for pid, version, metadata in
                      before.execute("SELECT person_id, key_version, metadata FROM persons")}
    before.close()

    store = TenantStore.open(legacy_file, TENANT, MODEL, DIM)
    conn = store.file.conn
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    for table in SEALED_TABLES:
        assert "nonce" not in columns(conn, table) and "ciphertext" not in columns(conn, table)
        for rowid, sealed, version in conn.execute(f"SELECT rowid, sealed, key_version FROM {table}"):
            # A re-packing: the header (format 1, the row's key version), then the very bytes that were stored.
            assert sealed[0] == 1 and key_version_of(sealed) == version and sealed[5:] == parts[table][rowid]
    for pid, version, metadata in conn.execute("SELECT person_id, key_version, metadata FROM persons"):
        if version == 0:
            assert metadata == persons_before[pid][1]  # the legacy clear row is left for seal_legacy_persons
        else:
            assert key_version_of(metadata) == version and metadata[5:] == persons_before[pid][1]

    # Faces (two key versions), rejections, the kept crop: each under the key its header names.
    loaded = store.load_all(cipher_for)
    assert sorted(loaded.face_ids) == sorted(CLEAR["faces"])
    for face_id, person_id, vector in zip(loaded.face_ids, loaded.person_ids, loaded.vectors):
        face = CLEAR["faces"][face_id]
        assert person_id == face["person_id"] and np.allclose(vector, face["vector"])
    assert store.key_versions_in_use() == {1: 3, 2: 2}
    rejections = store.load_rejections(cipher_for)
    [(rejection_id, rejection)] = CLEAR["rejections"].items()
    assert rejections.face_ids == [rejection_id] and np.allclose(rejections.vectors[0], rejection["vector"])
    crops = store.load_crops(list(CLEAR["faces"]), cipher_for)
    assert {face_id: crop.tolist() for face_id, crop in crops.items()} == \
        {face_id: face["crop"] for face_id, face in CLEAR["faces"].items() if face["crop"] is not None}

    # Persons: sealed under versions 1 and 2, and the legacy clear row, which activation then seals.
    keys = PersonKeys(data_key)
    for person_id, person in CLEAR["persons"].items():
        got = store.get_person(person_id, keys=keys)
        assert (got.external_id, got.metadata) == (person["external_id"], person["metadata"])
    assert store.get_person_by_external_id("anna", keys=keys).person_id in CLEAR["persons"]
    assert store.person_key_versions() == {0: 1, 1: 1, 2: 1}
    assert store.seal_legacy_persons(keys) == 1
    assert store.get_person_by_external_id("carl", keys=keys).metadata == {"name": "Carl"}

    # The audit chain and its MACed checkpoint still verify (the chain's table is not touched).
    mac_key = fixture_key(0, "audit-checkpoint")
    result = store.verify_audit(lambda message, tag: hmac.compare_digest(hmac.new(mac_key, message, hashlib.sha256).digest(), tag))
    assert result.intact and result.checkpoints == 1 and result.entries >= 8, result.to_dict()

    # A rotation finds each version's rows by the key_version index and re-seals them into tokens of the new one.
    plan = " ".join(str(row) for row in conn.execute("EXPLAIN QUERY PLAN SELECT face_id FROM faces WHERE key_version = 1"))
    assert "faces_by_key_version" in plan
    new = RecordCipher(fixture_key(3, "embeddings"), 3)
    for _ in store.reencrypt(cipher_for, new):
        pass
    while store.reencrypt_kept(cipher_for, new):
        pass
    assert store.key_versions_in_use() == {3: 5}
    assert {key_version_of(s) for (s,) in conn.execute("SELECT sealed FROM faces UNION ALL SELECT sealed FROM face_crops")} == {3}
    rotated = {3: new, 1: cipher_for(1), 2: cipher_for(2)}.__getitem__
    assert np.allclose(store.load_all(rotated).vectors, loaded.vectors)

    # The shadow vectors become the faces' vectors at a model migration's switch.
    assert store.switch_model(CLEAR["next_model"], CLEAR["next_dim"]) == 4
    switched = store.load_all(rotated)
    for face_id, vector in zip(switched.face_ids, switched.vectors):
        assert np.allclose(vector, CLEAR["shadow"][face_id])
    store.close()


def test_a_new_file_has_the_token_columns_only(tmp_path: Path) -> None:
    with TenantStore.open(tmp_path / "new.db", "t1", MODEL, DIM) as store:
        for table in SEALED_TABLES:
            names = columns(store.file.conn, table)
            assert "sealed" in names and "key_version" in names and "nonce" not in names and "ciphertext" not in names


# ---- the camera file (events.db) -------------------------------------------------------------------------------
EVENTS_SQL, EVENTS_CLEAR = DATA / "events-820bf94.sql", json.loads((DATA / "events-820bf94.json").read_text())


def test_an_events_db_of_820bf94_migrates_to_tokens_and_every_value_reads_back(tmp_path: Path) -> None:
    from streams.event_index import EventKeys
    from streams.store import StreamStore

    path = tmp_path / "events.db"
    conn = apsw.Connection(str(path))
    conn.execute(EVENTS_SQL.read_text())
    stored = {table: dict(conn.execute(f"SELECT rowid, CAST(nonce || {column} AS BLOB) FROM {table}"))
              for table, column in (("streams", "sealed_url"), ("events", "payload"), ("unknowns", "vectors"),
                                    ("webhooks", "sealed"))}
    conn.close()
    keys = EventKeys(tenant_id=EVENTS_CLEAR["tenant_id"])
    for version in (1, 2):
        keys.add(version, RecordCipher(fixture_key(version, "events"), version), fixture_key(version, "events-index"),
                 current=version == 2)

    store = StreamStore(path, EVENTS_CLEAR["tenant_id"])
    for table, before in stored.items():
        assert "nonce" not in columns(store.file.db, table)
        for rowid, sealed, version in store.file.db.execute(f"SELECT rowid, sealed, key_version FROM {table}"):
            assert key_version_of(sealed) == version and sealed[5:] == before[rowid]
    [stream] = store.streams(keys)
    assert {k: stream[k] for k in ("stream_id", "name", "url")} == {k: EVENTS_CLEAR["stream"][k] for k in ("stream_id", "name", "url")}
    events = store.events(keys)
    assert {str(e["seq"]): {k: e[k] for k in EVENTS_CLEAR["events"][str(e["seq"])]} for e in events} == EVENTS_CLEAR["events"]
    assert [e["seq"] for e in store.events(keys, person="anna")] == [events[0]["seq"]]  # the blind index still finds it
    [unknown] = store.unknowns(keys).values()
    assert unknown["model"] == EVENTS_CLEAR["unknown"]["model"]
    assert np.allclose(unknown["vectors"], EVENTS_CLEAR["unknown"]["vectors"])
    [webhook] = store.webhooks(keys)
    assert (webhook["url"], webhook["secret"]) == (EVENTS_CLEAR["webhook"]["url"], EVENTS_CLEAR["webhook"]["secret"])
    assert len(store.due_deliveries(now=10**10)) == 1
    # A rotation re-seals every value under the current version, found by the key_version index.
    assert store.key_versions() == {1, 2}
    assert store.reseal(keys) == 3  # the stream and the two events (under 1)
    assert store.key_versions() == {2} and [e["seq"] for e in store.events(keys, person="anna")] == [events[0]["seq"]]
    store.close()
