"""Local provider and Keyring: round trips, rotation, binding, tampering, crypto-shredding."""

from __future__ import annotations

import os
import shutil
import stat

import apsw
import pytest
from kms_testutil import read_keystore_bytes

from kms import DataKey, InvalidCiphertext, InvalidRecord, KeyNotFound, Keyring, is_transient
from kms.errors import ProviderUnavailable, Throttled
from kms.providers.base import KeyProvider, canonical_context
from kms.providers.local import LocalKeyProvider
from kms.records import key_version_of

CTX = {"tenant_id": "acme", "purpose": "tek"}


def test_local_provider_round_trip_and_file_mode(local_provider, tmp_path):
    assert isinstance(local_provider, KeyProvider)
    plaintext, wrapped = local_provider.generate_data_key(CTX)
    assert len(plaintext) == 32 and plaintext not in wrapped
    assert local_provider.unwrap(wrapped, dict(reversed(list(CTX.items())))) == plaintext  # order-free
    assert local_provider.unwrap(local_provider.wrap(plaintext, CTX), CTX) == plaintext
    mode = stat.S_IMODE(os.stat(tmp_path / "keys" / "root.json").st_mode)
    assert mode == 0o600


def test_local_provider_wrong_context_and_tamper(local_provider):
    plaintext, wrapped = local_provider.generate_data_key(CTX)
    with pytest.raises(InvalidCiphertext):
        local_provider.unwrap(wrapped, {"tenant_id": "other", "purpose": "tek"})
    with pytest.raises(InvalidCiphertext):
        local_provider.unwrap(wrapped, {**CTX, "extra": "x"})
    for index in (0, 5, 20, len(wrapped) - 1):
        tampered = bytearray(wrapped)
        tampered[index] ^= 0x01
        with pytest.raises((InvalidCiphertext, KeyNotFound)):
            local_provider.unwrap(bytes(tampered), CTX)
    with pytest.raises(InvalidCiphertext):
        local_provider.unwrap(wrapped[:10], CTX)
    with pytest.raises(ValueError):
        local_provider.wrap(plaintext, {})


def test_local_provider_rotation_keeps_old_versions(local_provider, tmp_path):
    first_root = local_provider.current_root_id()
    plaintext, old_blob = local_provider.generate_data_key(CTX)
    new_root = local_provider.rotate_root()
    assert new_root != first_root == "local:v1" and new_root == local_provider.current_root_id()
    assert local_provider.unwrap(old_blob, CTX) == plaintext
    # A second instance (another process) reads the rotated file and both versions.
    reopened = LocalKeyProvider(tmp_path / "keys" / "root.json")
    assert reopened.current_root_id() == new_root
    assert reopened.unwrap(old_blob, CTX) == plaintext


def test_canonical_context_is_order_independent():
    assert canonical_context({"b": "2", "a": "1"}) == canonical_context({"a": "1", "b": "2"})


def test_errors_say_which_are_transient():
    assert is_transient(Throttled()) and is_transient(ProviderUnavailable())
    assert not is_transient(InvalidCiphertext()) and not is_transient(KeyNotFound())


@pytest.fixture
def keyring(local_provider, tmp_path):
    ring = Keyring(local_provider, tmp_path / "keys" / "keystore.db", cache_ttl_s=60.0)
    yield ring
    ring.close()


def test_keyring_round_trip_and_idempotent_create(keyring):
    keyring.create_tenant("acme")
    keyring.create_tenant("acme")
    assert keyring.versions("acme") == [1] and keyring.current_version("acme") == 1
    key = keyring.data_key("acme")
    assert isinstance(key, DataKey) and key.version == 1 and key.purpose == "embeddings"
    assert key.key.hex() not in repr(key)
    record = key.cipher().seal(b"\x00" * 2048, aad=b"acme/rec-1")
    assert keyring.data_key("acme", version=1).cipher().open(record, aad=b"acme/rec-1") == b"\x00" * 2048
    # Purpose and tenant separate keys.
    with pytest.raises(InvalidRecord):
        keyring.data_key("acme", purpose="thumbnails").cipher().open(record, aad=b"acme/rec-1")
    keyring.create_tenant("globex")
    with pytest.raises(InvalidRecord):
        keyring.data_key("globex").cipher().open(record, aad=b"acme/rec-1")
    with pytest.raises(KeyNotFound):
        keyring.data_key("nobody")


def test_keyring_never_stores_plaintext_keys(keyring):
    keyring.create_tenant("acme")
    tek = keyring._tek("acme", keyring._tenant_row("acme")[1])
    cek = keyring._cek("acme", 1, keyring._db.execute("SELECT cek_wrapped FROM ceks").fetchone()[0])
    data = read_keystore_bytes(keyring.keystore_path)
    assert tek not in data and cek not in data
    assert stat.S_IMODE(os.stat(keyring.keystore_path).st_mode) == 0o600
    pragmas = {p: keyring._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("secure_delete", "journal_mode", "synchronous")}
    assert pragmas == {"secure_delete": 1, "journal_mode": "wal", "synchronous": 2}


def test_keyring_tenant_rotation_keeps_old_versions_until_retired(keyring):
    keyring.create_tenant("acme")
    old_record = keyring.data_key("acme").cipher().seal(b"face-v1", aad=b"r1")
    assert keyring.rotate_tenant("acme") == 2
    assert keyring.current_version("acme") == 2 and keyring.versions("acme") == [1, 2]
    new_key = keyring.data_key("acme")
    assert new_key.version == 2
    with pytest.raises(InvalidRecord):
        new_key.cipher().open(old_record, aad=b"r1")
    old_plain = keyring.data_key("acme", version=key_version_of(old_record)).cipher().open(old_record, aad=b"r1")
    assert old_plain == b"face-v1"
    # Caller re-encrypts, then retires v1.
    new_record = new_key.cipher().seal(old_plain, aad=b"r1")
    with pytest.raises(ValueError):
        keyring.retire_version("acme", 2)
    keyring.retire_version("acme", 1)
    assert keyring.versions("acme") == [2]
    with pytest.raises(KeyNotFound):
        keyring.data_key("acme", version=1)
    assert keyring.data_key("acme").cipher().open(new_record, aad=b"r1") == b"face-v1"


def test_keyring_root_rotation_rewraps_teks_only(keyring):
    for tenant in ("acme", "globex"):
        keyring.create_tenant(tenant)
    record = keyring.data_key("acme").cipher().seal(b"face", aad=b"r")
    before = dict(keyring._db.execute("SELECT tenant_id, tek_wrapped FROM tenants").fetchall())
    ceks_before = keyring._db.execute("SELECT * FROM ceks ORDER BY tenant_id").fetchall()
    result = keyring.rotate_root()
    assert result["previous_root_id"] == "local:v1" and result["root_id"] == "local:v2"
    assert result["rewrapped"] == 2 and result["tenants"] == 2
    after = dict(keyring._db.execute("SELECT tenant_id, tek_wrapped FROM tenants").fetchall())
    assert all(before[t] != after[t] for t in before)
    assert keyring._db.execute("SELECT * FROM ceks ORDER BY tenant_id").fetchall() == ceks_before
    # Fresh keyring (no cache) on the same store still derives the same data key.
    fresh = Keyring(keyring.provider, keyring.keystore_path, cache_ttl_s=0)
    assert fresh.data_key("acme").cipher().open(record, aad=b"r") == b"face"
    assert fresh.rewrap_tenants()["rewrapped"] == 0  # idempotent resume
    status = fresh.status()
    assert status["provider"] == "local" and status["root_id"] == "local:v2" and status["tenant_count"] == 2
    assert status["tenants"]["acme"] == {"current_version": 1, "versions": [1], "root_id": "local:v2"}
    fresh.close()


def test_keyring_detects_tampered_wrapped_keys(keyring):
    keyring.create_tenant("acme")
    fresh = Keyring(keyring.provider, keyring.keystore_path, cache_ttl_s=0)
    db = apsw.Connection(str(keyring.keystore_path))  # autocommit: each UPDATE is committed as it runs
    (cek,) = db.execute("SELECT cek_wrapped FROM ceks").fetchone()
    db.execute("UPDATE ceks SET cek_wrapped = ?", (cek[:-1] + bytes([cek[-1] ^ 1]),))
    with pytest.raises(InvalidCiphertext):
        fresh.data_key("acme")
    (tek,) = db.execute("SELECT tek_wrapped FROM tenants").fetchone()
    db.execute("UPDATE tenants SET tek_wrapped = ?", (tek[:-1] + bytes([tek[-1] ^ 1]),))
    db.close()
    with pytest.raises(InvalidCiphertext):
        fresh.data_key("acme")
    fresh.close()


def test_destroy_tenant_crypto_shreds(keyring, tmp_path):
    for tenant in ("acme", "globex"):
        keyring.create_tenant(tenant)
    keyring.rotate_tenant("acme")
    sealed = [keyring.data_key("acme", version=v).cipher().seal(b"face", aad=b"acme/r") for v in (1, 2)]
    tek_wrapped = keyring._tenant_row("acme")[1]
    cek_wrapped = [r[0] for r in keyring._db.execute("SELECT cek_wrapped FROM ceks WHERE tenant_id='acme'")]
    assert tek_wrapped in read_keystore_bytes(keyring.keystore_path)

    keyring.destroy_tenant("acme")

    # Copy the files as they are on disk *after* destroy; none of acme's wrapped keys may remain.
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = keyring.keystore_path.with_name(keyring.keystore_path.name + suffix)
        if source.exists():
            shutil.copy(source, copy / source.name)
    data = read_keystore_bytes(copy / keyring.keystore_path.name)
    assert tek_wrapped not in data and tek_wrapped[-16:] not in data
    for blob in cek_wrapped:
        assert blob not in data and blob[-16:] not in data

    with pytest.raises(KeyNotFound):
        keyring.data_key("acme")
    with pytest.raises(KeyNotFound):
        keyring.data_key("acme", version=1)
    with pytest.raises(KeyNotFound):
        keyring.destroy_tenant("acme")
    assert keyring.data_key("globex").version == 1  # other tenants untouched
    # No key the keyring can still produce opens the old records, even if the id is reused.
    keyring.create_tenant("acme")
    candidates = [keyring.data_key(t, purpose=p) for t in ("acme", "globex") for p in ("embeddings", "tek")]
    for record in sealed:
        for candidate in candidates:
            with pytest.raises(InvalidRecord):
                RecordCipherAnyVersion(candidate).open(record, aad=b"acme/r")


class RecordCipherAnyVersion:
    """Opens a record with a data key whatever version label it carries (worst case for shredding)."""

    def __init__(self, data_key: DataKey) -> None:
        self._key = data_key.key

    def open(self, record, *, aad: bytes) -> bytes:
        from kms.records import RecordCipher

        return RecordCipher(self._key, key_version_of(record)).open(record, aad=aad)
