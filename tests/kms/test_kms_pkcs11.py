"""PKCS#11 provider against a real SoftHSM2 token."""

from __future__ import annotations

import threading

import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from kms import InvalidCiphertext, Keyring
from kms.providers.pkcs11 import _PKCS11_LOCK, _load_library

CTX = {"tenant_id": "acme", "purpose": "tek"}


def test_round_trip(pkcs11_provider):
    plaintext, wrapped = pkcs11_provider.generate_data_key(CTX)
    assert len(plaintext) == 32 and plaintext not in wrapped
    assert pkcs11_provider.unwrap(wrapped, CTX) == plaintext
    assert pkcs11_provider.unwrap(pkcs11_provider.wrap(b"x" * 40, CTX), CTX) == b"x" * 40
    assert pkcs11_provider.current_root_id().endswith("-v1")
    pkcs11_provider.check()


def test_wrong_context_and_tamper(pkcs11_provider):
    _, wrapped = pkcs11_provider.generate_data_key(CTX)
    with pytest.raises(InvalidCiphertext):
        pkcs11_provider.unwrap(wrapped, {"tenant_id": "globex", "purpose": "tek"})
    for index in (3, 10, len(wrapped) - 1):
        tampered = bytearray(wrapped)
        tampered[index] ^= 0x01
        with pytest.raises(InvalidCiphertext):
            pkcs11_provider.unwrap(bytes(tampered), CTX)
    with pytest.raises(InvalidCiphertext):
        pkcs11_provider.unwrap(wrapped[:-8], CTX)


def test_rotate_root_keeps_old_blobs(pkcs11_provider):
    plaintext, old_blob = pkcs11_provider.generate_data_key(CTX)
    new_root = pkcs11_provider.rotate_root()
    assert new_root.endswith("-v2") and pkcs11_provider.current_root_id() == new_root
    assert pkcs11_provider.unwrap(old_blob, CTX) == plaintext
    new_blob = pkcs11_provider.wrap(plaintext, CTX)
    assert new_blob[:8] != old_blob[:8]  # header names root v2
    assert pkcs11_provider.unwrap(new_blob, CTX) == plaintext


def test_root_key_is_non_extractable(pkcs11_provider, softhsm):
    label = pkcs11_provider.current_root_id()
    with _PKCS11_LOCK:
        token = _load_library(softhsm["module_path"]).get_token(token_label=softhsm["token_label"])
        with token.open() as session:  # the provider's login is application-wide
            root = session.get_key(label=label, object_class=ObjectClass.SECRET_KEY)
            assert root[Attribute.EXTRACTABLE] is False
            assert root[Attribute.SENSITIVE] is True
            assert root[Attribute.NEVER_EXTRACTABLE] is True
            assert root[Attribute.TOKEN] is True
            with pytest.raises(p11e.AttributeSensitive):
                root[Attribute.VALUE]


def test_concurrent_calls_are_serialised(pkcs11_provider):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            ctx = {"tenant_id": f"t{n}", "purpose": "tek"}
            for _ in range(15):
                plaintext, wrapped = pkcs11_provider.generate_data_key(ctx)
                assert pkcs11_provider.unwrap(wrapped, ctx) == plaintext
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


def test_keyring_on_pkcs11(pkcs11_provider, tmp_path):
    keyring = Keyring(pkcs11_provider, tmp_path / "keystore.db", cache_ttl_s=0)
    keyring.create_tenant("acme")
    record = keyring.data_key("acme").cipher().seal(b"face", aad=b"acme/1")
    assert keyring.rotate_root()["rewrapped"] == 1
    assert keyring.data_key("acme").cipher().open(record, aad=b"acme/1") == b"face"
    keyring.close()
