"""Provider MACs for tamper-evident checkpoints: local file, AWS KMS on a real moto server, SoftHSM2.

Each provider MACs inside itself (KMS GenerateMac/VerifyMac with an HMAC_256 key, PKCS#11 CKM_SHA256_HMAC
with a token key, local HMAC under a key derived from the root); a tag verifies only for the same message,
context and provider key.
"""

from __future__ import annotations

import pytest

from kms import KeyManager, MacTag
from kms.providers.aws import AwsKmsProvider
from kms_testutil import CallLog

PROVIDERS = ("local_provider", "aws_provider", "pkcs11_provider")
CTX = {"purpose": "audit-checkpoint", "scope": "tenant", "tenant_id": "acme"}
MESSAGE = b"securegate/chain/v1 acme seq=42 head=" + bytes(range(32))


@pytest.fixture(params=PROVIDERS)
def provider(request):
    return request.getfixturevalue(request.param)


def test_round_trip(provider):
    tag = provider.mac(MESSAGE, CTX)
    assert len(tag.mac) == 32 and tag.key_id
    assert provider.verify_mac(MESSAGE, tag, CTX) is True
    again = provider.mac(MESSAGE, CTX)
    assert again == tag  # HMAC is deterministic: same key, same input
    assert MacTag.from_bytes(tag.to_bytes()) == tag


def test_tampered_message_and_tag_refused(provider):
    tag = provider.mac(MESSAGE, CTX)
    edited = bytearray(MESSAGE)
    edited[-1] ^= 0x01
    assert provider.verify_mac(bytes(edited), tag, CTX) is False
    assert provider.verify_mac(MESSAGE[:-1], tag, CTX) is False
    flipped = bytearray(tag.mac)
    flipped[0] ^= 0x80
    assert provider.verify_mac(MESSAGE, MacTag(tag.key_id, bytes(flipped)), CTX) is False
    assert provider.verify_mac(MESSAGE, MacTag(tag.key_id, tag.mac[:16]), CTX) is False
    assert provider.verify_mac(MESSAGE, MacTag(tag.key_id + "0", tag.mac), CTX) is False  # a key not ours


def test_wrong_context_refused(provider):
    tag = provider.mac(MESSAGE, CTX)
    assert provider.verify_mac(MESSAGE, tag, {**CTX, "purpose": "erasure-receipt"}) is False
    assert provider.verify_mac(MESSAGE, tag, {**CTX, "tenant_id": "globex"}) is False
    assert provider.verify_mac(MESSAGE, tag, {"purpose": "audit-checkpoint", "scope": "org"}) is False


def test_mac_survives_root_rotation(provider):
    tag = provider.mac(MESSAGE, CTX)
    provider.rotate_root()
    assert provider.verify_mac(MESSAGE, tag, CTX) is True
    assert provider.verify_mac(MESSAGE, provider.mac(MESSAGE, CTX), CTX) is True


def test_aws_mac_key_is_an_hmac_cmk(aws_provider, moto_endpoint):
    tag = aws_provider.mac(MESSAGE, CTX)
    metadata = aws_provider._client.describe_key(KeyId=aws_provider.mac_key_alias)["KeyMetadata"]
    assert metadata["KeySpec"] == "HMAC_256" and metadata["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert tag.key_id in (metadata["KeyId"], metadata["Arn"])
    # Another provider's HMAC key on the same account: its tags are refused, not sent to VerifyMac.
    other = AwsKmsProvider(aws_provider.key_alias + "-other", region="us-east-1", endpoint_url=moto_endpoint,
                           create_root_if_missing=True)
    foreign = other.mac(MESSAGE, CTX)
    assert other.verify_mac(MESSAGE, foreign, CTX) is True
    assert aws_provider.verify_mac(MESSAGE, foreign, CTX) is False


def test_pkcs11_mac_key_is_non_extractable(pkcs11_provider, softhsm):
    from pkcs11 import Attribute, ObjectClass
    from pkcs11 import exceptions as p11e

    from kms.providers.pkcs11 import _PKCS11_LOCK, _load_library

    tag = pkcs11_provider.mac(MESSAGE, CTX)
    assert tag.key_id == pkcs11_provider.mac_key_label and tag.key_id.endswith("-mac")
    with _PKCS11_LOCK:
        token = _load_library(softhsm["module_path"]).get_token(token_label=softhsm["token_label"])
        with token.open() as session:
            key = session.get_key(label=tag.key_id, object_class=ObjectClass.SECRET_KEY)
            assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
            assert key[Attribute.TOKEN] is True
            with pytest.raises(p11e.AttributeSensitive):
                key[Attribute.VALUE]


def test_local_tag_is_not_made_with_the_root_itself(tmp_path):
    """The local MAC key is derived from the root: a tag is not HMAC(root key, input)."""
    import base64
    import hashlib
    import hmac
    import json

    from kms.providers.base import mac_input
    from kms.providers.local import LocalKeyProvider

    provider = LocalKeyProvider(tmp_path / "root.json")
    root = base64.b64decode(json.loads((tmp_path / "root.json").read_text())["keys"]["1"])
    tag = provider.mac(MESSAGE, CTX)
    assert tag.key_id == "local:v1"
    assert tag.mac != hmac.digest(root, mac_input(MESSAGE, CTX), hashlib.sha256)


@pytest.mark.parametrize("provider_fixture", PROVIDERS)
def test_key_manager_binds_purpose_and_tenant(provider_fixture, request, tmp_path):
    log = CallLog()
    manager = KeyManager({}, str(tmp_path / "ks.db"), provider=request.getfixturevalue(provider_fixture), observe=log)
    tag = manager.mac(MESSAGE, "audit-checkpoint", tenant_id="acme")
    assert manager.verify_mac(MESSAGE, tag, "audit-checkpoint", tenant_id="acme") is True
    assert manager.verify_mac(MESSAGE, tag.to_bytes(), "audit-checkpoint", tenant_id="acme") is True
    assert manager.verify_mac(MESSAGE + b"x", tag, "audit-checkpoint", tenant_id="acme") is False
    assert manager.verify_mac(MESSAGE, tag, "erasure-receipt", tenant_id="acme") is False
    assert manager.verify_mac(MESSAGE, tag, "audit-checkpoint", tenant_id="globex") is False
    assert manager.verify_mac(MESSAGE, tag, "audit-checkpoint") is False  # the org scope
    assert manager.verify_mac(MESSAGE, b"not a tag", "audit-checkpoint", tenant_id="acme") is False
    org_tag = manager.mac(MESSAGE, "erasure-receipt")
    assert manager.verify_mac(MESSAGE, org_tag, "erasure-receipt") is True
    assert manager.verify_mac(MESSAGE, org_tag, "erasure-receipt", tenant_id="org") is False
    with pytest.raises(ValueError):
        manager.mac(MESSAGE, "")
    assert log.calls["mac"] == 2 and log.calls["provider.mac"] == 2
    assert log.calls["provider.verify_mac"] == 8  # 9 verifications; the malformed tag never reaches the provider
    manager.close()


def test_kms_outage_is_an_error_not_a_verdict(moto_endpoint, tmp_path):
    """With KMS unreachable, verify_mac raises ProviderUnavailable: "could not check" never reads as "tampered"."""
    from moto.server import ThreadedMotoServer

    from kms import ProviderUnavailable

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    provider = AwsKmsProvider("alias/mac-outage", region="us-east-1", endpoint_url=f"http://{host}:{port}",
                              create_root_if_missing=True, max_attempts=2, base_delay_s=0.01,
                              connect_timeout_s=0.5, read_timeout_s=1.0)
    manager = KeyManager({}, str(tmp_path / "ks.db"), provider=provider)
    tag = manager.mac(MESSAGE, "audit-checkpoint", "acme")
    assert manager.verify_mac(MESSAGE, tag, "audit-checkpoint", "acme") is True
    server.stop()
    with pytest.raises(ProviderUnavailable):
        manager.verify_mac(MESSAGE, tag, "audit-checkpoint", "acme")
    with pytest.raises(ProviderUnavailable):
        manager.mac(MESSAGE, "audit-checkpoint", "acme")
    manager.close()
