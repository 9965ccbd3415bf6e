"""tenancy/bulk_import.py on a real tenant file: persons by external id, skips by keyed photo tag, tags that
go with their face, and no photo hash in clear on disk."""

import hashlib

import numpy as np
import pytest

from kms import DataKey
from tenancy import bulk_import
from tenancy.personal import PersonKeys
from tenancy.store import TenantStore


def data_keys(seed: bytes = b"k"):
    """Deterministic stand-in for the KeyService's data keys (version None = current = 1); the tags and ciphers
    built from them are the real ones."""

    def data_key(version, purpose="embeddings"):
        v = version or 1
        return DataKey("t1", purpose, v, hashlib.sha256(seed + f"{v}/{purpose}".encode()).digest())

    return data_key


@pytest.fixture
def store(tmp_path):
    with TenantStore.open(tmp_path / "embeddings.db", "t1", "m/4", 4) as s:
        yield s


def item(external_id, photo: bytes, metadata=None):
    vector = np.random.default_rng(len(photo)).normal(size=4).astype(np.float32)
    return {"external_id": external_id, "metadata": metadata or {}, "digest": hashlib.sha256(photo).digest(),
            "vector": vector / np.linalg.norm(vector), "det_score": 0.9, "quality": 0.5}


def run(store, items, data_key=None):
    data_key = data_key or data_keys()
    with store.transaction():
        return bulk_import.import_faces(store, PersonKeys(data_key), bulk_import.PhotoTags(data_key),
                                        data_key(None).cipher(), items)


def test_persons_by_external_id_and_skips_of_the_same_photo(store):
    first = run(store, [item("alice", b"a1", {"team": "blue"}), item("alice", b"a1"), item("alice", b"a2"), item("bob", b"a1")])
    assert [r["status"] for r in first] == ["enrolled", "skipped", "enrolled", "enrolled"]
    assert first[0]["person_id"] == first[1]["person_id"] == first[2]["person_id"] != first[3]["person_id"]
    assert [r["created_person"] for r in first] == [True, False, False, True]
    again = run(store, [item("alice", b"a1"), item("alice", b"a2"), item("bob", b"a1")])
    assert [r["status"] for r in again] == ["skipped"] * 3
    assert [r["face_id"] for r in again] == [first[0]["face_id"], first[2]["face_id"], first[3]["face_id"]]
    assert store.count_faces() == 3
    assert store.get_person(first[0]["person_id"], keys=PersonKeys(data_keys())).metadata == {"team": "blue"}


def test_a_deleted_face_can_be_imported_again(store):
    (enrolled,) = run(store, [item("alice", b"a1")])
    store.delete_face(enrolled["person_id"], enrolled["face_id"])
    data_key = data_keys()
    tags = bulk_import.PhotoTags(data_key)
    assert bulk_import.find_imported(store, PersonKeys(data_key), tags, [("alice", hashlib.sha256(b"a1").digest())]) == [None]
    assert [r["status"] for r in run(store, [item("alice", b"a1")])] == ["enrolled"]


def test_the_file_holds_keyed_tags_not_photo_hashes(store):
    photos = [b"photo-%d" % k for k in range(5)]
    run(store, [item("alice", p) for p in photos])
    store.checkpoint()
    on_disk = store.path.read_bytes()
    assert not any(hashlib.sha256(p).digest() in on_disk for p in photos)
    # Under another tenant key the same photo of the same person is not recognised.
    other = data_keys(b"another tenant key")
    found = bulk_import.find_imported(store, PersonKeys(data_keys()), bulk_import.PhotoTags(other),
                                      [("alice", hashlib.sha256(photos[0]).digest())])
    assert found == [None]
