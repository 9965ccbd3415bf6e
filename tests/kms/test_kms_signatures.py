"""Provider signatures a third party can check (issue 23 §6): local file, AWS KMS on a real moto server (an
ECC_NIST_P256 SIGN_VERIFY key), SoftHSM2 (a P-256 key pair on the token). Every signature here is checked with
`cryptography` alone, from the published PEM, never with a verify function of ours."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from kms import KeyManager
from kms.providers.base import MAX_SIGNED_BYTES

PROVIDERS = ("local_provider", "aws_provider", "pkcs11_provider")
MESSAGE = b'{"type":"securegate.erasure-receipt/v1","tenant_id":"t_1","faces":3}'


def checks(pem: str, signature: bytes, message: bytes) -> bool:
    """An independent check: the PEM public key and ECDSA P-256 / SHA-256, as any holder of the key would do it."""
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


@pytest.fixture(params=PROVIDERS)
def provider(request):
    return request.getfixturevalue(request.param)


def test_a_signature_verifies_with_the_published_key_alone(provider):
    signature = provider.sign(MESSAGE)
    keys = {k.key_id: k for k in provider.signing_keys()}
    assert signature.algorithm == "ECDSA_P256_SHA256" and signature.key_id in keys
    pem = keys[signature.key_id].public_key_pem
    assert checks(pem, signature.value, MESSAGE)
    assert not checks(pem, signature.value, MESSAGE.replace(b'"faces":3', b'"faces":0'))
    flipped = bytearray(signature.value)
    flipped[-1] ^= 0x01
    assert not checks(pem, bytes(flipped), MESSAGE)
    with pytest.raises(ValueError):
        provider.sign(b"x" * (MAX_SIGNED_BYTES + 1))


def test_signatures_made_before_a_root_rotation_still_verify(provider):
    before = provider.sign(MESSAGE)
    provider.rotate_root()
    keys = {k.key_id: k.public_key_pem for k in provider.signing_keys()}
    assert checks(keys[before.key_id], before.value, MESSAGE)
    after = provider.sign(MESSAGE)
    assert checks(keys[after.key_id], after.value, MESSAGE)
    assert provider.signing_keys()[0].key_id == after.key_id  # the current key first


def test_aws_signing_key_is_an_ecc_sign_verify_cmk(aws_provider):
    signature = aws_provider.sign(MESSAGE)
    metadata = aws_provider._client.describe_key(KeyId=aws_provider.sign_key_alias)["KeyMetadata"]
    assert metadata["KeySpec"] == "ECC_NIST_P256" and metadata["KeyUsage"] == "SIGN_VERIFY"
    assert signature.key_id == metadata["Arn"]
    # KMS itself agrees (its own Verify), besides the independent check above.
    verdict = aws_provider._client.verify(KeyId=signature.key_id, Message=MESSAGE, MessageType="RAW",
                                          Signature=signature.value, SigningAlgorithm="ECDSA_SHA_256")
    assert verdict["SignatureValid"] is True


def test_pkcs11_signing_key_never_leaves_the_token(pkcs11_provider, softhsm):
    from pkcs11 import Attribute, ObjectClass
    from pkcs11 import exceptions as p11e

    from kms.providers.pkcs11 import _PKCS11_LOCK, _load_library

    signature = pkcs11_provider.sign(MESSAGE)
    assert signature.key_id == pkcs11_provider.sign_key_label and signature.key_id.endswith("-sign")
    with _PKCS11_LOCK:
        token = _load_library(softhsm["module_path"]).get_token(token_label=softhsm["token_label"])
        with token.open(user_pin=None) as session:
            public = session.get_key(label=signature.key_id, object_class=ObjectClass.PUBLIC_KEY)
            assert public[Attribute.TOKEN] is True
    with _PKCS11_LOCK:
        session = pkcs11_provider._in_session(lambda s: s)
        private = session.get_key(label=signature.key_id, object_class=ObjectClass.PRIVATE_KEY)
        assert private[Attribute.SENSITIVE] is True and private[Attribute.EXTRACTABLE] is False
        with pytest.raises(p11e.AttributeSensitive):
            private[Attribute.VALUE]


@pytest.mark.parametrize("provider_fixture", PROVIDERS)
def test_key_manager_signs_through_the_provider(provider_fixture, request, tmp_path):
    manager = KeyManager({}, str(tmp_path / "ks.db"), provider=request.getfixturevalue(provider_fixture))
    signature = manager.sign(MESSAGE)
    (current, *_) = manager.signing_keys()
    assert current.key_id == signature.key_id and checks(current.public_key_pem, signature.value, MESSAGE)
    manager.close()
