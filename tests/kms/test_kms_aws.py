"""AWS KMS provider against a real moto server, plus error mapping with the real botocore errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from kms import InvalidCiphertext, KeyDisabled, KeyNotFound, Keyring, KmsError, ProviderUnavailable, Throttled
from kms.providers.aws import AwsKmsProvider

CTX = {"tenant_id": "acme", "purpose": "tek"}


def test_generate_unwrap_round_trip(aws_provider):
    plaintext, wrapped = aws_provider.generate_data_key(CTX)
    assert len(plaintext) == 32
    assert aws_provider.unwrap(wrapped, CTX) == plaintext
    assert aws_provider.unwrap(aws_provider.wrap(plaintext, CTX), CTX) == plaintext
    assert aws_provider.current_root_id().startswith("arn:aws:kms:us-east-1:")
    aws_provider.check()


def test_wrong_context_and_tampered_blob(aws_provider):
    _, wrapped = aws_provider.generate_data_key(CTX)
    with pytest.raises(InvalidCiphertext):
        aws_provider.unwrap(wrapped, {"tenant_id": "globex", "purpose": "tek"})
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(InvalidCiphertext):
        aws_provider.unwrap(tampered, CTX)


def test_rotate_root_keeps_old_blobs(aws_provider):
    old_root = aws_provider.current_root_id()
    plaintext, old_blob = aws_provider.generate_data_key(CTX)
    new_root = aws_provider.rotate_root()
    assert new_root != old_root and aws_provider.current_root_id() == new_root
    assert aws_provider.unwrap(old_blob, CTX) == plaintext


def test_missing_alias_is_key_not_found(moto_endpoint):
    provider = AwsKmsProvider("alias/does-not-exist", region="us-east-1", endpoint_url=moto_endpoint)
    with pytest.raises(KeyNotFound):
        provider.generate_data_key(CTX)


def test_keyring_on_aws(aws_provider, tmp_path):
    keyring = Keyring(aws_provider, tmp_path / "keystore.db", cache_ttl_s=0)
    keyring.create_tenant("acme")
    record = keyring.data_key("acme").cipher().seal(b"face", aad=b"acme/1")
    result = keyring.rotate_root()
    assert result["rewrapped"] == 1 and result["root_id"] != result["previous_root_id"]
    keyring.rotate_tenant("acme")
    assert keyring.data_key("acme", version=1).cipher().open(record, aad=b"acme/1") == b"face"
    keyring.destroy_tenant("acme")
    with pytest.raises(KeyNotFound):
        keyring.data_key("acme")
    keyring.close()


# -- error mapping: moto accepts disabled keys, so a stub raises the real botocore ClientErrors -----


class ScriptedKms:
    """Stand-in KMS client: each call pops the next scripted outcome (an exception or a response)."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def _next(self, **_kwargs):
        self.calls += 1
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    decrypt = encrypt = generate_data_key = describe_key = _next


def client_error(code: str, status: int = 400, operation: str = "Decrypt") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def stub_provider(client: ScriptedKms, sleeps: list[float]) -> AwsKmsProvider:
    return AwsKmsProvider(client=client, max_attempts=3, base_delay_s=0.01, sleep=sleeps.append)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NotFoundException", 400, KeyNotFound),
        ("DisabledException", 400, KeyDisabled),
        ("KMSInvalidStateException", 400, KeyDisabled),
        ("InvalidCiphertextException", 400, InvalidCiphertext),
        ("AccessDeniedException", 400, KmsError),
    ],
)
def test_permanent_errors_map_without_retry(code, status, expected):
    client, sleeps = ScriptedKms(client_error(code, status)), []
    with pytest.raises(expected) as info:
        stub_provider(client, sleeps).unwrap(b"blob", CTX)
    assert client.calls == 1 and sleeps == [] and not info.value.transient
    assert type(info.value) is expected


def test_throttling_is_retried_then_raised_as_throttled():
    client, sleeps = ScriptedKms(client_error("ThrottlingException")), []
    with pytest.raises(Throttled) as info:
        stub_provider(client, sleeps).unwrap(b"blob", CTX)
    assert client.calls == 3 and len(sleeps) == 2 and info.value.transient
    assert all(0 <= s <= 0.02 for s in sleeps)


def test_throttling_then_success_returns():
    client, sleeps = ScriptedKms(client_error("ThrottlingException"), {"Plaintext": b"k" * 32}), []
    assert stub_provider(client, sleeps).unwrap(b"blob", CTX) == b"k" * 32
    assert client.calls == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    "error",
    [
        client_error("KMSInternalException", 500),
        client_error("ServiceUnavailable", 503),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ],
)
def test_server_and_connection_errors_are_retried_then_unavailable(error):
    client, sleeps = ScriptedKms(error), []
    with pytest.raises(ProviderUnavailable):
        stub_provider(client, sleeps).unwrap(b"blob", CTX)
    assert client.calls == 3 and len(sleeps) == 2
