"""RecordCipher: the fast construction path still yields a normal, frozen SealedRecord."""

from __future__ import annotations

import dataclasses
import os

import pytest

from kms.records import InvalidRecord, RecordCipher, SealedRecord


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
