"""Record encryption: AES-256-GCM with a random 96-bit nonce and mandatory associated data, stored as one token.

The API is deliberately tiny (in the spirit of Fernet): a `RecordCipher` holds one data key and its version;
`seal` and `open` are the only operations (with their bulk forms), both require the associated data that binds
a record to where it belongs (tenant, record id, model), and what `seal` returns is what is stored. A record
moved to another row or tenant does not open.

The sealed token, self-describing, with a fixed-width 17-byte header:

    offset  size  field
    0       1     format version, 0x01
    1       4     key version: the content-key version of the data key it is sealed under, uint32 big-endian
    5       12    nonce, random
    17      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then its 16-byte tag

The header is not in the associated data: changing the format byte or the key version makes `open` refuse
(or pick another key, which then fails authentication); changing the nonce fails authentication. Every sealed
column of the tenant file and of the camera file holds such a token (docs/security.md, storage).
"""

from __future__ import annotations

import operator
import os
import struct
from collections.abc import Iterable, Sequence
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32
TAG_BYTES = 16
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">BI")  # format version, key version
HEADER_BYTES = _PREFIX.size + NONCE_BYTES  # 17
MIN_TOKEN_BYTES = HEADER_BYTES + TAG_BYTES  # a sealed empty plaintext


def aad(domain: bytes, *fields: str | bytes) -> bytes:
    """Associated data: `domain`, then each field (str as UTF-8) prefixed by its length (4 bytes, big-endian),
    so no two distinct tuples give the same bytes. The one encoder of every AAD our records are sealed under."""
    parts = [domain]
    for field in fields:
        encoded = field.encode("utf-8") if isinstance(field, str) else field
        parts += (_length(len(encoded)), encoded)
    return b"".join(parts)


_length = struct.Struct(">I").pack


class InvalidRecord(Exception):
    """The record was tampered with, moved, sealed under another key or associated data, or is not a token.

    From `open_many`, `index` says which record of the batch failed."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def token(key_version: int, nonce: bytes, ciphertext: bytes) -> bytes:
    """The token of a value sealed as separate parts (nonce, ciphertext with its tag, key version): a re-packing,
    nothing decrypted. What the forward migrations of files written before the token use."""
    if len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
        raise InvalidRecord("not a sealed value: nonce or ciphertext of the wrong length")
    return _PREFIX.pack(FORMAT_VERSION, key_version) + nonce + ciphertext


def key_version_of(sealed: bytes) -> int:
    """The content-key version a token is sealed under (read from its header; nothing is decrypted)."""
    _check_form(sealed)
    return _PREFIX.unpack_from(sealed)[1]


def _check_form(sealed: bytes, index: int | None = None) -> None:
    where = "" if index is None else f"record {index}: "
    if not isinstance(sealed, (bytes, bytearray, memoryview)):
        raise InvalidRecord(f"{where}a sealed token is bytes, got {type(sealed).__name__}", index)
    if len(sealed) < MIN_TOKEN_BYTES:
        raise InvalidRecord(f"{where}sealed token too short ({len(sealed)} bytes, at least {MIN_TOKEN_BYTES})", index)
    if sealed[0] != FORMAT_VERSION:
        raise InvalidRecord(f"{where}unknown sealed-token format {sealed[0]}", index)


_urandom = os.urandom
# A token's (prefix, nonce, ciphertext) in one C call: the cheapest split on the bulk path (open_many).
_split = operator.itemgetter(slice(0, _PREFIX.size), slice(_PREFIX.size, HEADER_BYTES), slice(HEADER_BYTES, None))


class RecordCipher:
    """Seals and opens small records under one AES-256 data key.

    Nonces are random (96 bits): safe for far more records than a tenant holds under one key version
    (NIST's bound for random nonces is 2**32 messages per key).
    """

    __slots__ = ("_encrypt", "_decrypt", "_prefix", "key_version")

    def __init__(self, key: bytes, key_version: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("RecordCipher needs a 32-byte (AES-256) key")
        aead = AESGCM(key)
        # Bound methods cached once: no per-record attribute lookups.
        self._encrypt = aead.encrypt
        self._decrypt = aead.decrypt
        self.key_version = int(key_version)
        self._prefix = _PREFIX.pack(FORMAT_VERSION, self.key_version)  # every token this cipher seals starts so

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """The sealed token of `plaintext`, bound to `aad` (required)."""
        if not aad:
            raise ValueError("associated data is required: it binds the record to its place")
        nonce = _urandom(NONCE_BYTES)
        return self._prefix + nonce + self._encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, *, aad: bytes) -> bytes:
        """The plaintext of a token this cipher's key version sealed; InvalidRecord otherwise."""
        try:
            head, nonce, ciphertext = _split(sealed)
            if head != self._prefix:
                self._refuse(sealed)
            return self._decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError, TypeError) as exc:  # ValueError: cut short inside its nonce; TypeError: not bytes
            self._failed(exc, sealed)

    def _refuse(self, sealed: bytes, index: int | None = None) -> None:
        """Why a token not starting with this cipher's prefix is refused (not a token, or another key version)."""
        _check_form(sealed, index)
        where = "record" if index is None else f"record {index}"
        raise InvalidRecord(f"{where} is sealed under key version {key_version_of(sealed)}, cipher holds {self.key_version}",
                            index)

    # Bulk forms: what activation (decrypt a whole tenant) and batch enrolment use. One Python call for many
    # records keeps the per-record cost at the AEAD itself.
    def seal_many(self, plaintexts: Sequence[bytes], aads: Sequence[bytes]) -> list[bytes]:
        if len(plaintexts) != len(aads) or not all(aads):
            raise ValueError("one non-empty associated data per record is required")
        encrypt, prefix = self._encrypt, self._prefix
        # One read of the OS CSPRNG for every nonce of the batch: each 12-byte slice is as random as a
        # separate read, without a syscall per record.
        pool = _urandom(NONCE_BYTES * len(plaintexts))
        out = []
        for i, (plaintext, aad) in enumerate(zip(plaintexts, aads)):
            nonce = pool[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            out.append(prefix + nonce + encrypt(nonce, plaintext, aad))
        return out

    def open_many(self, tokens: Iterable[bytes], aads: Iterable[bytes]) -> list[bytes]:
        """The plaintexts of `tokens` (as stored), all sealed under this cipher's key version."""
        decrypt, prefix, split = self._decrypt, self._prefix, _split
        out: list[bytes] = []
        pairs = zip(tokens, aads, strict=True)
        sealed = b""
        try:
            for sealed, aad in pairs:
                head, nonce, ciphertext = split(sealed)
                if head != prefix:
                    self._refuse(sealed, len(out))
                out.append(decrypt(nonce, ciphertext, aad))
        except (InvalidTag, ValueError, TypeError) as exc:
            self._failed(exc, sealed, len(out))
        return out

    @staticmethod
    def _failed(exc: Exception, sealed: object, index: int | None = None) -> NoReturn:
        """Raise the InvalidRecord a failed open stands for: not a token (not bytes, too short, unknown format), else
        failed authentication. A TypeError or ValueError not about the token (an aad that is not bytes, `tokens`
        and `aads` of different lengths) goes on as it is."""
        _check_form(sealed, index)  # type: ignore[arg-type]
        if not isinstance(exc, InvalidTag):
            raise exc
        where = "record" if index is None else f"record {index}"
        raise InvalidRecord(f"{where} failed authentication (tampered, moved, or wrong key)", index) from exc

    def __repr__(self) -> str:  # never show key material
        return f"RecordCipher(key_version={self.key_version})"
