"""How the tenant's records are sealed: each kind's associated data (kms.records.aad, under its own domain)
and plaintext form. Every AAD binds the record to its tenant and its own id (and model, for vectors), so a
row copied to another id, table or tenant fails authentication instead of silently matching someone else."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from kms.records import InvalidRecord, RecordCipher, aad, key_version_of
from tenancy import personal
from tenancy.personal import PersonKeys
from tenancy.store.errors import CorruptPerson, CorruptRecord

# Embeddings are stored little-endian regardless of host so a file moves between machines.
VECTOR_DTYPE = np.dtype("<f4")
FACE_DOMAIN = b"securegate.tenancy.face.v1"
# Rejections ("not this person" negative examples) are embeddings too, sealed the same way under their own
# domain: a rejection row copied into the faces table (or the reverse) fails authentication.
REJECTION_DOMAIN = b"securegate.tenancy.rejection.v1"
# Kept enrolment crops (aligned 112x112 faces) under their own domain: a crop is never mistaken for a vector.
CROP_DOMAIN = b"securegate.tenancy.crop.v1"
_length = struct.Struct(">I").pack  # aad()'s length prefix


def record_aad(tenant_id: str, face_id: str, model: str) -> bytes:
    """Associated data binding a sealed embedding to its tenant, face and model."""
    return aad(FACE_DOMAIN, tenant_id, face_id, model)


def encode_crop(crop: np.ndarray) -> bytes:
    """An aligned face crop (H, W, 3 uint8) as bytes: height, width (uint16 big-endian) then the pixels."""
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"a crop is H x W x 3, got {crop.shape}")
    return struct.pack(">HH", crop.shape[0], crop.shape[1]) + crop.tobytes()


def decode_crop(data: bytes) -> np.ndarray:
    height, width = struct.unpack(">HH", data[:4])
    return np.frombuffer(data[4:], np.uint8).reshape(height, width, 3).copy()


class RecordCodec:
    """The AADs and plaintext forms of one tenant's records, for the model the file is bound to."""

    def __init__(self, tenant_id: str, model: str, dim: int) -> None:
        self.tenant_id = tenant_id
        # Vector AADs are (domain, tenant, id, model): the parts around the id are encoded once, here, and each
        # record's AAD is prefix + the id length-prefixed + suffix, the same bytes as aad(domain, tenant, id, model).
        self._face_prefix = aad(FACE_DOMAIN, tenant_id)
        self._rejection_prefix = aad(REJECTION_DOMAIN, tenant_id)
        self.rebind(model, dim)

    def rebind(self, model: str, dim: int) -> None:
        """The file is bound to another model (a model migration's switch)."""
        self.model, self.dim = model, dim
        self._model_suffix = aad(b"", model)
        self.vector_bytes = dim * VECTOR_DTYPE.itemsize

    # ------------------------------------------------------------------ associated data
    # face_aad runs once per row of an activation (load_all): the id's length prefix is written inline here
    # (0.3 us against aad()'s 0.8); tests/tenancy/test_store.py asserts the bytes are aad()'s.
    def face_aad(self, face_id: str) -> bytes:
        encoded = face_id.encode("utf-8")
        return self._face_prefix + _length(len(encoded)) + encoded + self._model_suffix

    def rejection_aad(self, rejection_id: str) -> bytes:
        return aad(self._rejection_prefix, rejection_id) + self._model_suffix

    def crop_aad(self, face_id: str) -> bytes:
        return aad(CROP_DOMAIN, self.tenant_id, face_id)

    def shadow_aad(self, face_id: str, model: str) -> bytes:
        """A shadow vector's AAD is the one its face's vector has once the file is bound to `model`."""
        return record_aad(self.tenant_id, face_id, model)

    def person_aad(self, person_id: str, field: str) -> bytes:
        return personal.field_aad(self.tenant_id, person_id, field)

    # ------------------------------------------------------------------ vectors
    def seal_vector(self, embedding: np.ndarray, cipher: RecordCipher, aad_bytes: bytes) -> bytes:
        vector = np.asarray(embedding)
        if vector.shape != (self.dim,):
            raise ValueError(f"embedding shape {vector.shape} != ({self.dim},)")
        if not np.isfinite(vector).all():
            raise ValueError("embedding contains NaN or infinity")
        return cipher.seal(vector.astype(VECTOR_DTYPE, copy=False).tobytes(), aad=aad_bytes)

    def open(self, cipher_for_version: Callable[[int], RecordCipher], record_id: str, sealed: bytes, aad_bytes: bytes) -> bytes:
        """One sealed token's plaintext, under the key version its header names; CorruptRecord(record_id) if it
        is not a token or fails authentication."""
        try:
            return cipher_for_version(key_version_of(sealed)).open(sealed, aad=aad_bytes)
        except InvalidRecord as exc:
            raise CorruptRecord(record_id) from exc

    def open_vector(self, cipher_for_version: Callable[[int], RecordCipher], record_id: str, sealed: bytes,
                    aad_bytes: bytes) -> np.ndarray:
        plaintext = self.open(cipher_for_version, record_id, sealed, aad_bytes)
        if len(plaintext) != self.vector_bytes:
            raise CorruptRecord(record_id)
        return np.frombuffer(plaintext, VECTOR_DTYPE)

    # ------------------------------------------------------------------ kept crops
    def seal_crop(self, face_id: str, crop: np.ndarray, cipher: RecordCipher) -> bytes:
        return cipher.seal(encode_crop(crop), aad=self.crop_aad(face_id))

    # ------------------------------------------------------------------ personal fields (tenancy/personal.py)
    def seal_field(self, cipher: RecordCipher, person_id: str, field: str, value: str) -> bytes:
        return cipher.seal(value.encode("utf-8"), aad=self.person_aad(person_id, field))

    def open_field(self, keys: PersonKeys, person_id: str, version: int, field: str, stored: bytes | str | None) -> str | None:
        if stored is None:
            return None
        if version == 0:  # written before schema v3, not sealed yet (see seal_legacy_persons)
            return stored  # type: ignore[return-value]
        try:
            plaintext = keys.cipher(key_version_of(stored)).open(stored, aad=self.person_aad(person_id, field))
        except InvalidRecord as exc:
            raise CorruptPerson(person_id) from exc
        return plaintext.decode("utf-8")
