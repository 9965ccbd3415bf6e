"""Bulk import on the tenant's side: persons found or created by external id, faces stored, and the photos
they came from remembered so that importing the same photo of the same person again is skipped.

A photo is remembered by a keyed tag, never by its hash in clear: HMAC-SHA256 over (person id, SHA-256 of
the photo's bytes) under a key derived from the tenant's embeddings data key of a content-key version. The
file holds the tag, its key version and the face it became; without the tenant's key a tag cannot be tested
against a photo someone holds ("was this picture enrolled?"). Tags go when their face goes (the table's
foreign keys cascade from faces and persons), so a deleted face can be imported again.

Tags are not recomputable (the photo is not kept): after a content-key rotation retires a version, photos
tagged under it are no longer recognised and would be enrolled again by a re-import.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kms import DataKey, RecordCipher

# The table (created by the store's migration v3), beside the faces it points at.
PHOTO_TABLE = """
CREATE TABLE import_photos (
    person_id   TEXT NOT NULL REFERENCES persons (person_id) ON DELETE CASCADE,
    photo_tag   BLOB NOT NULL,
    key_version INTEGER NOT NULL,
    face_id     TEXT NOT NULL REFERENCES faces (face_id) ON DELETE CASCADE,
    PRIMARY KEY (person_id, photo_tag)
);
CREATE INDEX import_photos_by_face ON import_photos (face_id);
"""

_KEY_LABEL = b"securegate.tenancy.import-photo-key.v1"
_TAG_DOMAIN = b"securegate.tenancy.import-photo.v1\x00"


def _tag_key(data_key: DataKey) -> bytes:
    # Key separation: the tag key is a PRF of the data key, never the data key itself.
    return hmac.new(data_key.key, _KEY_LABEL, hashlib.sha256).digest()


class PhotoTags:
    """Tag keys by content-key version for one operation, derived from `data_key(version)` (the tenant's
    embeddings data key; None = current). `clear()` drops them when the operation ends."""

    def __init__(self, data_key: Callable[[int | None], DataKey]) -> None:
        self._data_key = data_key
        self._keys: dict[int, bytes] = {}
        self.current_version: int | None = None

    def _key(self, version: int | None) -> tuple[int, bytes]:
        if version is None:
            if self.current_version is None:
                data_key = self._data_key(None)
                self.current_version = data_key.version
                self._keys[data_key.version] = _tag_key(data_key)
            version = self.current_version
        elif version not in self._keys:
            self._keys[version] = _tag_key(self._data_key(version))
        return version, self._keys[version]

    def tag(self, person_id: str, digest: bytes, version: int | None = None) -> tuple[int, bytes]:
        version, key = self._key(version)
        message = _TAG_DOMAIN + person_id.encode("utf-8") + b"\x00" + digest
        return version, hmac.new(key, message, hashlib.sha256).digest()

    def candidates(self, person_id: str, digest: bytes, versions: Sequence[int]) -> list[bytes]:
        """The photo's tag under every version in `versions` that can still be derived (retired ones cannot)."""
        tags = []
        for version in versions:
            try:
                tags.append(self.tag(person_id, digest, version)[1])
            except Exception:  # a retired version's key is gone: its tags cannot match any more
                continue
        return tags

    def clear(self) -> None:
        self._keys.clear()


def find_imported(store, person_keys, tags: PhotoTags, photos: Sequence[tuple[str, bytes]]) -> list[dict | None]:
    """For each (external_id, photo digest): {person_id, face_id} when that photo of that person is enrolled.
    `store` is a TenantStore, `person_keys` its PersonKeys (tenancy/personal.py)."""
    versions = store.import_key_versions()
    found: list[dict | None] = []
    for external_id, digest in photos:
        person = store.get_person_by_external_id(external_id, keys=person_keys)
        face_id = store.imported_face(person.person_id, tags.candidates(person.person_id, digest, versions)) if person else None
        found.append({"person_id": person.person_id, "face_id": face_id} if face_id else None)
    return found


def import_faces(store, person_keys, tags: PhotoTags, cipher: RecordCipher, items: Sequence[dict[str, Any]]) -> list[dict]:
    """Store every item in the caller's open transaction. An item: external_id, metadata (used only when the
    person is created), digest, vector, det_score, quality. Answers per item, in order: {status: enrolled |
    skipped, person_id, face_id, quality, created_person}."""
    versions = store.import_key_versions()
    results = []
    for item in items:
        person = store.get_person_by_external_id(item["external_id"], keys=person_keys)
        created = person is None
        if created:
            person = store.create_person(item["external_id"], item.get("metadata") or {}, keys=person_keys)
        candidates = tags.candidates(person.person_id, item["digest"], versions)
        face_id = None if created else store.imported_face(person.person_id, candidates)
        if face_id is not None:
            results.append({"status": "skipped", "person_id": person.person_id, "face_id": face_id, "created_person": False})
            continue
        vector = np.asarray(item["vector"], np.float32).reshape(-1)
        # `crop`: the aligned face, present when the tenant keeps enrolment photos (stored sealed with the face).
        record = store.add_face(person.person_id, vector, cipher, item["det_score"], item["quality"], crop=item.get("crop"))
        version, tag = tags.tag(person.person_id, item["digest"])
        store.record_import(person.person_id, record.face_id, tag, version)
        if version not in versions:
            versions = [*versions, version]
        results.append({"status": "enrolled", "person_id": person.person_id, "face_id": record.face_id,
                        "quality": record.quality, "created_person": created})
    return results
