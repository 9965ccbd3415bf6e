"""Record encryption: AES-256-GCM with a random 96-bit nonce and mandatory associated data.

The API is deliberately tiny (in the spirit of Fernet): a `RecordCipher` holds one data key and its
version; `seal` and `open` are the only operations, and both require the associated data that binds a
record to where it belongs (tenant, record id, model). A record moved to another row or tenant does not
open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class InvalidRecord(Exception):
    """The record was tampered with, moved, or sealed under another key or associated data."""


@dataclass(frozen=True, slots=True)
class SealedRecord:
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte GCM tag
    key_version: int


class RecordCipher:
    """Seals and opens small records under one AES-256 data key.

    Nonces are random (96 bits): safe for far more records than a tenant holds under one key version
    (NIST's bound for random nonces is 2**32 messages per key).
    """

    __slots__ = ("_aead", "key_version")

    def __init__(self, key: bytes, key_version: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("RecordCipher needs a 32-byte (AES-256) key")
        self._aead = AESGCM(key)
        self.key_version = int(key_version)

    def seal(self, plaintext: bytes, *, aad: bytes) -> SealedRecord:
        if not aad:
            raise ValueError("associated data is required: it binds the record to its place")
        nonce = os.urandom(NONCE_BYTES)
        return SealedRecord(nonce, self._aead.encrypt(nonce, plaintext, aad), self.key_version)

    def open(self, record: SealedRecord, *, aad: bytes) -> bytes:
        if record.key_version != self.key_version:
            raise InvalidRecord(
                f"record is sealed under key version {record.key_version}, cipher holds {self.key_version}"
            )
        try:
            return self._aead.decrypt(record.nonce, record.ciphertext, aad)
        except InvalidTag as exc:
            raise InvalidRecord("record failed authentication (tampered, moved, or wrong key)") from exc

    def __repr__(self) -> str:  # never show key material
        return f"RecordCipher(key_version={self.key_version})"
