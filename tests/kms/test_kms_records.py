"""RecordCipher: the fast construction path still yields a normal, frozen SealedRecord."""

from __future__ import annotations

import dataclasses
import os

import pytest

from kms.records import InvalidRecord, RecordCipher, SealedRecord, aad


def test_sealed_record_is_a_normal_frozen_dataclass():
    cipher = RecordCipher(os.urandom(32), 3)
    record = cipher.seal(b"x" * 2048, aad=b"t/1")
    assert isinstance(record, SealedRecord) and record.key_version == 3 and len(record.nonce) == 12
    assert record == SealedRecord(record.nonce, record.ciphertext, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.key_version = 4  # type: ignore[misc]
    assert cipher.open(dataclasses.replace(record), aad=b"t/1") == b"x" * 2048
    with pytest.raises(InvalidRecord):
        cipher.open(record, aad=b"t/2")
    with pytest.raises(InvalidRecord):
        cipher.open(dataclasses.replace(record, key_version=2), aad=b"t/1")
    with pytest.raises(ValueError):
        cipher.seal(b"x", aad=b"")
    assert "key" not in repr(cipher).replace("key_version", "")


def test_bulk_seal_and_open_round_trip_and_refuse_tampering():
    import os

    import pytest

    from kms.records import InvalidRecord, RecordCipher

    cipher = RecordCipher(os.urandom(32), 3)
    plaintexts = [os.urandom(64) for _ in range(5)]
    aads = [f"face-{i}".encode() for i in range(5)]
    sealed = cipher.seal_many(plaintexts, aads)
    rows = [(r.nonce, r.ciphertext, r.key_version) for r in sealed]
    assert cipher.open_many(rows, aads) == plaintexts
    assert [cipher.open(r, aad=a) for r, a in zip(sealed, aads)] == plaintexts  # same format as seal()
    with pytest.raises(InvalidRecord, match="record 1"):
        cipher.open_many(rows, [aads[0], aads[0], *aads[2:]])  # a record moved to another place
    with pytest.raises(InvalidRecord, match="key version"):
        RecordCipher(os.urandom(32), 4).open_many(rows, aads)
    with pytest.raises(ValueError):
        cipher.seal_many(plaintexts, [b""] * 5)


def test_aad_length_prefixes_each_field():
    """aad(domain, *fields): the domain, then each field (str as UTF-8) after its 4-byte big-endian length."""
    assert aad(b"dom", "t1", b"\x00", "") == b"dom" + b"\x00\x00\x00\x02t1" + b"\x00\x00\x00\x01\x00" + b"\x00\x00\x00\x00"
    assert aad(b"dom", "ø") == b"dom\x00\x00\x00\x02\xc3\xb8"
    assert aad(b"dom", "a", "bc") != aad(b"dom", "ab", "c")
    assert aad(b"dom") == b"dom"
