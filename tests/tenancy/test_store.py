"""TenantStore against real files: encryption at rest, binding, deletion hygiene, crash durability."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import apsw
import numpy as np
import pytest

from kms import Keyring
from kms.providers.local import LocalKeyProvider
from kms.records import HEADER_BYTES, RecordCipher, aad
from tenancy.personal import PersonKeys
from tenancy.store import (
    CorruptRecord,
    DuplicateExternalId,
    InvalidCursor,
    InvalidMetadata,
    ModelMismatch,
    NotFound,
    TenantMismatch,
    TenantStore,
    record_aad,
)

DIM = 64
MODEL = "arcface-r100"


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def cipher(key: bytes) -> RecordCipher:
    return RecordCipher(key, 1)


@pytest.fixture
def keyring(tmp_path: Path):
    """A real key hierarchy (local provider) holding tenant t1's keys."""
    ring = Keyring(LocalKeyProvider(tmp_path / "keys" / "root.key"), tmp_path / "keys" / "keystore.db")
    ring.create_tenant("t1")
    yield ring
    ring.close()


@pytest.fixture
def keys(keyring: Keyring) -> PersonKeys:
    return PersonKeys(lambda version, purpose: keyring.data_key("t1", purpose, version))


@pytest.fixture
def store(tmp_path: Path):
    with TenantStore.open(tmp_path / "tenants" / "t1" / "embeddings.db", "t1", MODEL, DIM) as s:
        yield s


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def file_bytes(store: TenantStore) -> bytes:
    wal = Path(str(store.path) + "-wal")
    return store.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_round_trip(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    person = store.create_person("emp-1", {"name": "Ada"}, keys=keys)
    assert store.get_person(person.person_id, keys=keys) == person
    assert store.get_person_by_external_id("emp-1", keys=keys) == person
    vectors = unit_vectors(3)
    faces = [store.add_face(person.person_id, v, cipher, det_score=0.9, quality=0.8) for v in vectors]
    assert {f.face_id for f in store.faces_of(person.person_id)} == {f.face_id for f in faces}
    loaded = store.load_all(lambda version: cipher)
    assert sorted(loaded.face_ids) == sorted(f.face_id for f in faces)
    assert loaded.person_ids == [person.person_id] * 3
    by_id = dict(zip(loaded.face_ids, loaded.vectors))
    for face, vector in zip(faces, vectors):
        np.testing.assert_array_equal(by_id[face.face_id], vector)
    assert loaded.vectors.dtype == np.float32 and loaded.vectors.shape == (3, DIM)
    assert store.count_faces() == 3 and store.key_versions_in_use() == {1: 3}


def _hand_built_aad(domain: bytes, *fields: str) -> bytes:
    """How the store built every AAD before kms.records.aad (copied here as the reference): files sealed
    then must still open, so the one encoder has to give the same bytes."""
    return b"".join([domain, *(struct.pack(">I", len(f)) + f for f in (x.encode("utf-8") for x in fields))])


def test_aad_fast_path_matches_canonical_form(store: TenantStore) -> None:
    codec = store.codec
    for face_id in ("f1", "", "0123456789abcdef0123456789abcdef", "Lönn-ø"):
        assert codec.face_aad(face_id) == record_aad("t1", face_id, MODEL)
        assert codec.face_aad(face_id) == _hand_built_aad(b"securegate.tenancy.face.v1", "t1", face_id, MODEL)
        assert codec.rejection_aad(face_id) == _hand_built_aad(b"securegate.tenancy.rejection.v1", "t1", face_id, MODEL)
        assert codec.crop_aad(face_id) == _hand_built_aad(b"securegate.tenancy.crop.v1", "t1", face_id)
        assert codec.shadow_aad(face_id, "other/512") == _hand_built_aad(b"securegate.tenancy.face.v1", "t1", face_id, "other/512")
        assert codec.person_aad(face_id, "metadata") == _hand_built_aad(b"securegate.tenancy.person.v1", "t1", face_id, "metadata")
    # The bytes themselves, written out: a change of the encoding fails here, not on a customer's file.
    assert aad(b"D", "t1", "f", "") == b"D\x00\x00\x00\x02t1\x00\x00\x00\x01f\x00\x00\x00\x00"
    assert record_aad("a", "bc", "d") != record_aad("ab", "c", "d")


def test_errors(store: TenantStore, cipher: RecordCipher, tmp_path: Path, keys: PersonKeys) -> None:
    store.create_person("dup", {}, keys=keys)
    with pytest.raises(DuplicateExternalId):
        store.create_person("dup", {}, keys=keys)
    with pytest.raises(NotFound):
        store.add_face("nobody", unit_vectors(1)[0], cipher, 0.9, 0.9)
    with pytest.raises(NotFound):
        store.delete_person("nobody")
    with pytest.raises(ValueError):
        store.add_face(store.get_person_by_external_id("dup", keys=keys).person_id, np.zeros(DIM + 1), cipher, 0.9, 0.9)


def test_model_and_tenant_mismatch_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    TenantStore.open(path, "t1", MODEL, DIM).close()
    with pytest.raises(ModelMismatch):
        TenantStore.open(path, "t1", "other-model", DIM)
    with pytest.raises(ModelMismatch):
        TenantStore.open(path, "t1", MODEL, DIM * 2)
    with pytest.raises(TenantMismatch):
        TenantStore.open(path, "t2", MODEL, DIM)
    TenantStore.open(path, "t1", MODEL, DIM).close()


def test_no_plaintext_vector_on_disk(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    person = store.create_person(None, {}, keys=keys)
    vectors = unit_vectors(20, seed=1)
    for v in vectors:
        store.add_face(person.person_id, v, cipher, 0.9, 0.9)
    raw = file_bytes(store)  # before any checkpoint: the WAL holds the fresh pages
    assert Path(str(store.path) + "-wal").stat().st_size > 0
    for v in vectors:
        plain = v.astype("<f4").tobytes()
        assert plain not in raw
        for start in range(0, len(plain) - 16, 16):
            assert plain[start : start + 16] not in raw
    store.checkpoint()
    raw = file_bytes(store)
    assert not any(v.astype("<f4").tobytes()[:16] in raw for v in vectors)


def test_tampered_ciphertext_is_corrupt(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    person = store.create_person(None, {}, keys=keys)
    face = store.add_face(person.person_id, unit_vectors(1)[0], cipher, 0.9, 0.9)
    conn = apsw.Connection(str(store.path))
    blob = bytearray(conn.execute("SELECT sealed FROM faces").fetchone()[0])
    blob[-1] ^= 1  # a bit of the GCM tag
    conn.execute("UPDATE faces SET sealed = ? WHERE face_id = ?", (bytes(blob), face.face_id))
    conn.close()
    with pytest.raises(CorruptRecord) as excinfo:
        store.load_all(lambda version: cipher)
    assert excinfo.value.face_id == face.face_id


def _copy_face_row(src: Path, dst: Path, face_id: str, new_face_id: str, new_person_id: str) -> None:
    row = apsw.Connection(str(src)).execute(
        "SELECT sealed, key_version, det_score, quality, created_at FROM faces WHERE face_id = ?", (face_id,)
    ).fetchone()
    conn = apsw.Connection(str(dst))
    conn.execute(
        "INSERT INTO faces (face_id, person_id, sealed, key_version, det_score, quality, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (new_face_id, new_person_id, *row),
    )
    conn.close()


def test_row_moved_to_other_face_or_tenant_fails(tmp_path: Path, cipher: RecordCipher, keys: PersonKeys) -> None:
    a = TenantStore.open(tmp_path / "a.db", "tenant-a", MODEL, DIM)
    b = TenantStore.open(tmp_path / "b.db", "tenant-b", MODEL, DIM)
    pa, pb = a.create_person(None, {}, keys=keys), b.create_person(None, {}, keys=keys)
    face = a.add_face(pa.person_id, unit_vectors(1)[0], cipher, 0.9, 0.9)

    _copy_face_row(a.path, b.path, face.face_id, face.face_id, pb.person_id)  # same id, other tenant (same key!)
    with pytest.raises(CorruptRecord):
        b.load_all(lambda version: cipher)

    _copy_face_row(a.path, a.path, face.face_id, "f" * 32, pa.person_id)  # other face id, same tenant
    with pytest.raises(CorruptRecord) as excinfo:
        a.load_all(lambda version: cipher)
    assert excinfo.value.face_id == "f" * 32
    a.close()
    b.close()


def test_delete_leaves_no_trace_in_file_bytes(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    keep = store.create_person("keeper-0001", {}, keys=keys)
    gone = store.create_person("to-be-forgotten-42", {"note": "secret-metadata-xyz"}, keys=keys)
    store.add_faces(keep.person_id, unit_vectors(5, seed=2), cipher, [0.9] * 5, [0.9] * 5)
    gone_faces = store.add_faces(gone.person_id, unit_vectors(3, seed=3), cipher, [0.9] * 3, [0.9] * 3)
    single = store.add_face(keep.person_id, unit_vectors(1, seed=4)[0], cipher, 0.9, 0.9)
    conn = apsw.Connection(str(store.path))
    ciphertexts = {face_id: sealed[HEADER_BYTES:] for face_id, sealed in conn.execute("SELECT face_id, sealed FROM faces")}
    conn.close()
    store.checkpoint()
    assert gone.person_id.encode() in file_bytes(store)  # sanity: the scan would see it

    deleted = store.delete_person(gone.person_id)
    store.delete_face(keep.person_id, single.face_id)
    assert sorted(deleted) == sorted(f.face_id for f in gone_faces)
    raw = file_bytes(store)
    for face_id in [*deleted, single.face_id]:
        assert face_id.encode() not in raw
        assert ciphertexts[face_id][:16] not in raw
    for needle in (b"to-be-forgotten-42", b"secret-metadata-xyz", gone.person_id.encode()):
        assert needle not in raw
    assert keep.person_id.encode() in raw and b"keeper-0001" not in raw  # the survivor is there, sealed
    assert store.get_person_by_external_id("keeper-0001", keys=keys) == keep
    assert store.load_all(lambda version: cipher).vectors.shape == (5, DIM)
    store.vacuum()
    assert b"to-be-forgotten-42" not in file_bytes(store)


def test_bulk_delete_for_retention_leaves_no_trace(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    person = store.create_person(None, {}, keys=keys)
    faces = store.add_faces(person.person_id, unit_vectors(4, seed=5), cipher, [0.9] * 4, [0.9] * 4)
    store.checkpoint()
    assert {f.face_id for f in store.faces_created_before(faces[-1].created_at + 1)} == {f.face_id for f in faces}
    store.delete_faces([f.face_id for f in faces[:3]])
    store.delete_faces([])  # nothing to expire is fine
    raw = file_bytes(store)
    assert [f.face_id for f in store.faces_of(person.person_id)] == [faces[3].face_id]
    assert all(f.face_id.encode() not in raw for f in faces[:3])


def test_list_persons_keyset_pagination(store: TenantStore, keys: PersonKeys) -> None:
    created = [store.create_person(f"ext-{i}", {"i": i}, keys=keys) for i in range(23)]
    seen, cursor = [], None
    while True:
        page, cursor = store.list_persons(5, cursor, keys=keys)
        seen.extend(page)
        if cursor is None:
            break
        store.create_person(None, {"late": True}, keys=keys)  # inserts while paging must not shuffle earlier pages
    expected = sorted(created, key=lambda p: (p.created_at, p.person_id))
    assert [p.person_id for p in seen[:23]] == [p.person_id for p in expected]
    assert len({p.person_id for p in seen}) == len(seen)


def test_reencrypt_moves_all_rows_to_new_version(store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    person = store.create_person(None, {}, keys=keys)
    vectors = unit_vectors(23, seed=5)
    store.add_faces(person.person_id, vectors, cipher, [0.9] * 23, [0.9] * 23)
    new = RecordCipher(os.urandom(32), 2)
    ciphers = {1: cipher, 2: new}
    progress = list(store.reencrypt(ciphers.__getitem__, new, batch_size=10))
    assert progress == [(10, 23), (20, 23), (23, 23)]
    assert store.key_versions_in_use() == {2: 23}
    loaded = store.load_all(lambda version: new)
    np.testing.assert_array_equal(np.sort(loaded.vectors, axis=0), np.sort(vectors, axis=0))


CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from kms.records import RecordCipher, aad
    from tenancy.store import TenantStore
    path, key_hex, person_id = sys.argv[1:4]
    store = TenantStore.open(path, "t1", "arcface-r100", 64)
    cipher = RecordCipher(bytes.fromhex(key_hex), 1)
    rng = np.random.default_rng(0)
    while True:
        face = store.add_face(person_id, rng.standard_normal(64).astype(np.float32), cipher, 0.9, 0.9)
        print(face.face_id, flush=True)
    """
)


def test_sigkill_mid_burst_keeps_every_acknowledged_face(tmp_path: Path, key: bytes, cipher: RecordCipher, keys: PersonKeys) -> None:
    path = tmp_path / "crash.db"
    with TenantStore.open(path, "t1", MODEL, DIM) as s:
        person = s.create_person(None, {}, keys=keys)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), key.hex(), person.person_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    acknowledged = [child.stdout.readline().strip() for _ in range(40)]
    os.kill(child.pid, signal.SIGKILL)
    acknowledged += [line.strip() for line in child.stdout.read().splitlines() if len(line.strip()) == 32]
    child.wait()
    with TenantStore.open(path, "t1", MODEL, DIM) as s:
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        loaded = s.load_all(lambda version: cipher)  # every row present decrypts: none half-written
    assert set(acknowledged) <= set(loaded.face_ids)
    assert len(loaded.face_ids) >= 40


@pytest.mark.parametrize("metadata", [{"k": float("nan")}, {"k": [float("inf")]}, {"k": float("-inf")}])
def test_metadata_json_cannot_hold_is_invalid_not_a_duplicate(store: TenantStore, metadata, keys: PersonKeys):
    with pytest.raises(InvalidMetadata):
        store.create_person(None, metadata, keys=keys)
    store.create_person("taken", {}, keys=keys)
    with pytest.raises(DuplicateExternalId):
        store.create_person("taken", {}, keys=keys)
    assert len(store.list_persons(10, keys=keys)[0]) == 1


@pytest.mark.parametrize("cursor", ["0x1p+99999:x", "-0x1p+1024:x", "inf:x", "nan:x", "zz:x", ""])
def test_cursors_the_store_never_handed_out_are_invalid(store: TenantStore, cursor, keys: PersonKeys):
    with pytest.raises(InvalidCursor):
        store.list_persons(10, cursor, keys=keys)


def test_rejections_are_sealed_apart_from_faces_and_follow_rotation_merge_and_deletion(
        store: TenantStore, cipher: RecordCipher, keys: PersonKeys) -> None:
    """A rejection ("not this person") is a vector sealed under its own AAD domain: copied into the faces table
    under its own id it does not open as a face. Rotation re-seals rejections with the faces; a merge moves them
    (nothing re-sealed: the seal binds the rejection id); deleting the person deletes them."""
    keep, merged = store.create_person(None, {}, keys=keys), store.create_person(None, {}, keys=keys)
    store.add_face(keep.person_id, unit_vectors(1, seed=1)[0], cipher, 0.9, 0.9)
    vectors = unit_vectors(3, seed=2)
    ids = store.add_rejections(merged.person_id, vectors, cipher, "image")
    assert store.rejection_count() == 3 and store.key_versions_in_use() == {1: 4}
    assert vectors[0].astype("<f4").tobytes() not in file_bytes(store)

    with store.transaction():
        store._conn.execute("INSERT INTO faces (face_id, person_id, sealed, key_version, det_score, quality, created_at)"
                            " SELECT rejection_id, person_id, sealed, key_version, 0.9, 0.9, created_at"
                            " FROM rejections WHERE rejection_id = ?", (ids[0],))
    with pytest.raises(CorruptRecord) as excinfo:
        store.load_all(lambda version: cipher)
    assert excinfo.value.face_id == ids[0]
    with store.transaction():
        store._conn.execute("DELETE FROM faces WHERE face_id = ?", (ids[0],))

    new = RecordCipher(os.urandom(32), 2)
    list(store.reencrypt({1: cipher, 2: new}.__getitem__, new, batch_size=2))
    assert store.key_versions_in_use() == {2: 4}
    moved = store.merge_persons(keep.person_id, merged.person_id)
    assert moved == {"face_ids": [], "rejections": 3} and not store.has_person(merged.person_id)
    loaded = store.load_rejections(lambda version: new)  # the old key version is not needed any more
    assert sorted(loaded.face_ids) == sorted(ids) and set(loaded.person_ids) == {keep.person_id}
    np.testing.assert_array_equal(loaded.vectors[np.argsort(loaded.face_ids)], vectors[np.argsort(ids)])
    store.delete_person(keep.person_id)
    assert store.rejection_count() == 0
