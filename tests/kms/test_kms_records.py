"""RecordCipher: what `seal` returns is the stored token (format | key version | nonce | ciphertext+tag); `open`
refuses a token of another key version, a tampered or moved one, and anything that is not a token, clearly."""

from __future__ import annotations

import os
import struct

import pytest

from kms.records import (HEADER_BYTES, MIN_TOKEN_BYTES, InvalidRecord, RecordCipher, aad, key_version_of,
                         token)


def test_a_sealed_token_is_its_documented_layout():
    cipher = RecordCipher(os.urandom(32), 3)
    sealed = cipher.seal(b"x" * 2048, aad=b"t/1")
    assert isinstance(sealed, bytes) and len(sealed) == HEADER_BYTES + 2048 + 16 == 17 + 2048 + 16
    assert sealed[0] == 1 and struct.unpack(">I", sealed[1:5]) == (3,) and key_version_of(sealed) == 3
    assert token(3, sealed[5:17], sealed[17:]) == sealed  # the re-packing of separate parts (file migrations)
    assert cipher.open(sealed, aad=b"t/1") == b"x" * 2048
    assert cipher.seal(b"", aad=b"t/1") != cipher.seal(b"", aad=b"t/1")  # a fresh nonce each time
    assert len(cipher.seal(b"", aad=b"t/1")) == MIN_TOKEN_BYTES
    with pytest.raises(InvalidRecord, match="authentication"):
        cipher.open(sealed, aad=b"t/2")  # moved
    with pytest.raises(InvalidRecord, match="key version 3, cipher holds 2"):
        RecordCipher(os.urandom(32), 2).open(sealed, aad=b"t/1")
    with pytest.raises(ValueError):
        cipher.seal(b"x", aad=b"")
    assert "key" not in repr(cipher).replace("key_version", "")


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t[:MIN_TOKEN_BYTES - 1], "too short"),
    (lambda t: t[:9], "too short"),
    (lambda t: b"", "too short"),
    (lambda t: b"\x02" + t[1:], "unknown sealed-token format 2"),
    (lambda t: t[:1] + struct.pack(">I", 4) + t[5:], "key version 4, cipher holds 3"),
    (lambda t: t[:5] + bytes(12) + t[17:], "authentication"),  # another nonce
    (lambda t: t[:-1] + bytes([t[-1] ^ 1]), "authentication"),  # a flipped tag bit
])
def test_malformed_or_tampered_tokens_are_refused_clearly(mutate, message):
    cipher = RecordCipher(os.urandom(32), 3)
    sealed = cipher.seal(b"face", aad=b"t/1")
    with pytest.raises(InvalidRecord, match=message):
        cipher.open(mutate(sealed), aad=b"t/1")
    with pytest.raises(InvalidRecord, match=message) as bulk:
        cipher.open_many([sealed, mutate(sealed)], [b"t/1", b"t/1"])
    assert bulk.value.index == 1


def test_a_value_that_is_not_bytes_is_refused():
    with pytest.raises(InvalidRecord, match="bytes, got str"):
        key_version_of("not a token")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="wrong length"):
        token(1, b"short", bytes(32))


def test_bulk_seal_and_open_round_trip_and_refuse_tampering():
    cipher = RecordCipher(os.urandom(32), 3)
    plaintexts = [os.urandom(64) for _ in range(5)]
    aads = [f"face-{i}".encode() for i in range(5)]
    sealed = cipher.seal_many(plaintexts, aads)
    assert cipher.open_many(sealed, aads) == plaintexts
    assert [cipher.open(r, aad=a) for r, a in zip(sealed, aads)] == plaintexts  # same form as seal()
    assert len({s[5:17] for s in sealed}) == 5  # distinct nonces
    with pytest.raises(InvalidRecord, match="record 1"):
        cipher.open_many(sealed, [aads[0], aads[0], *aads[2:]])  # a record moved to another place
    with pytest.raises(InvalidRecord, match="key version"):
        RecordCipher(os.urandom(32), 4).open_many(sealed, aads)
    with pytest.raises(ValueError):
        cipher.seal_many(plaintexts, [b""] * 5)


def test_aad_length_prefixes_each_field():
    """aad(domain, *fields): the domain, then each field (str as UTF-8) after its 4-byte big-endian length."""
    assert aad(b"dom", "t1", b"\x00", "") == b"dom" + b"\x00\x00\x00\x02t1" + b"\x00\x00\x00\x01\x00" + b"\x00\x00\x00\x00"
    assert aad(b"dom", "ø") == b"dom\x00\x00\x00\x02\xc3\xb8"
    assert aad(b"dom", "a", "bc") != aad(b"dom", "ab", "c")
    assert aad(b"dom") == b"dom"


def test_a_missing_value_or_a_wrong_aad_type_is_said_plainly():
    cipher = RecordCipher(os.urandom(32), 3)
    sealed = cipher.seal(b"face", aad=b"t/1")
    with pytest.raises(InvalidRecord, match="bytes, got NoneType"):
        cipher.open(None, aad=b"t/1")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="record 1: a sealed token is bytes, got NoneType") as bulk:
        cipher.open_many([sealed, None], [b"t/1", b"t/1"])  # type: ignore[list-item]
    assert bulk.value.index == 1
    with pytest.raises(TypeError):
        cipher.open(sealed, aad="t/1")  # type: ignore[arg-type]  # a str: the caller's mistake, not the record's
    with pytest.raises(ValueError):
        cipher.open_many([sealed, sealed], [b"t/1"])  # lengths differ
