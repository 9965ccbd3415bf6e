"""AWS KMS provider: the org root key is a symmetric CMK reached through an alias.

KMS ciphertext blobs name the CMK they were made under, so `unwrap` (Decrypt) keeps working after
`rotate_root` repoints the alias at a new CMK. The encryption context is passed to KMS, which
authenticates it as AAD: a wrong context fails with InvalidCiphertextException.

MACs (tamper-evident checkpoints) use a second CMK, an HMAC_256 key (KeyUsage GENERATE_VERIFY_MAC) behind
`mac_key_alias` (default: the root alias + "-mac"): GenerateMac / VerifyMac, so the MAC key never leaves
KMS. A tag names the key that made it; VerifyMac is only asked about that key when it is the one behind our
alias, because a tag naming some other key the credentials may use (another account's) proves nothing.

Signatures (erasure receipts) use a third CMK, an ECC_NIST_P256 key (KeyUsage SIGN_VERIFY) behind
`sign_key_alias` (default: the root alias + "-sign"): Sign with ECDSA_SHA_256 over the RAW message, so the
private key never leaves KMS; GetPublicKey gives its public half to publish.

botocore's own retries are switched off; we retry throttling/5xx/connection errors ourselves with
bounded exponential backoff and full jitter, then map what is left onto `kms.errors`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from kms.errors import (
    InvalidCiphertext,
    KeyDisabled,
    KeyNotFound,
    KmsError,
    ProviderUnavailable,
    Throttled,
)
from kms.providers.base import (
    DATA_KEY_BYTES,
    MAC_BYTES,
    EncryptionContext,
    MacTag,
    Signature,
    SigningKey,
    mac_input,
    public_pem,
    require_blob,
    signable,
    validate_context,
    validate_plaintext_key,
)

T = TypeVar("T")

DEFAULT_ALIAS = "alias/securegate-root"

_THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "RequestLimitExceeded", "LimitExceededException"})
_SERVER_CODES = frozenset({"KMSInternalException", "DependencyTimeoutException", "InternalFailure", "ServiceUnavailable"})
_NETWORK_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)


class AwsKmsProvider:
    """Root key = the CMK behind `key_alias`; data keys are AES-256 from GenerateDataKey."""

    name = "aws"

    def __init__(
        self,
        key_alias: str = DEFAULT_ALIAS,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 4,
        base_delay_s: float = 0.05,
        max_delay_s: float = 1.0,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        create_root_if_missing: bool = False,
        mac_key_alias: str | None = None,
        sign_key_alias: str | None = None,
        session: boto3.session.Session | None = None,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not key_alias.startswith("alias/"):
            raise ValueError("key_alias must look like 'alias/<name>'")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.key_alias = key_alias
        self.mac_key_alias = mac_key_alias or f"{key_alias}-mac"
        if not self.mac_key_alias.startswith("alias/"):
            raise ValueError("mac_key_alias must look like 'alias/<name>'")
        self.sign_key_alias = sign_key_alias or f"{key_alias}-sign"
        if not self.sign_key_alias.startswith("alias/"):
            raise ValueError("sign_key_alias must look like 'alias/<name>'")
        self._sign_key_loaded = False
        self._create_if_missing = create_root_if_missing
        self._mac_key_ids: frozenset[str] = frozenset()  # KeyId and Arn of the key behind mac_key_alias
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep
        if client is None:
            boto_config = Config(
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                retries={"total_max_attempts": 1, "mode": "standard"},  # we retry, not botocore
            )
            client = (session or boto3.session.Session()).client(
                "kms", region_name=region, endpoint_url=endpoint_url, config=boto_config
            )
        self._client = client
        if create_root_if_missing:
            self._ensure_root()

    # -- KeyProvider -------------------------------------------------------------------------------
    def current_root_id(self) -> str:
        return self._call(lambda: self._client.describe_key(KeyId=self.key_alias))["KeyMetadata"]["Arn"]

    def generate_data_key(self, context: EncryptionContext) -> tuple[bytes, bytes]:
        ctx = validate_context(context)
        response = self._call(
            lambda: self._client.generate_data_key(KeyId=self.key_alias, KeySpec="AES_256", EncryptionContext=ctx)
        )
        plaintext = response["Plaintext"]
        if len(plaintext) != DATA_KEY_BYTES:
            raise KmsError("KMS returned a data key of unexpected length")
        return plaintext, response["CiphertextBlob"]

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> bytes:
        plaintext = validate_plaintext_key(plaintext)
        ctx = validate_context(context)
        response = self._call(
            lambda: self._client.encrypt(KeyId=self.key_alias, Plaintext=plaintext, EncryptionContext=ctx)
        )
        return response["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, context: EncryptionContext) -> bytes:
        wrapped = require_blob(wrapped, 1)
        ctx = validate_context(context)
        # No KeyId: symmetric KMS blobs name their CMK, which is what keeps old-root blobs readable.
        response = self._call(lambda: self._client.decrypt(CiphertextBlob=wrapped, EncryptionContext=ctx))
        return response["Plaintext"]

    def rotate_root(self) -> str:
        new_key = self._create_cmk()
        self._call(lambda: self._client.update_alias(AliasName=self.key_alias, TargetKeyId=new_key["KeyId"]))
        return new_key["Arn"]

    def check(self) -> None:
        self.current_root_id()

    def mac(self, message: bytes, context: EncryptionContext) -> MacTag:
        data = mac_input(message, context)
        if not self._mac_key_ids:
            self._load_mac_key()  # creates it on first use when allowed
        response = self._call(
            lambda: self._client.generate_mac(KeyId=self.mac_key_alias, Message=data, MacAlgorithm="HMAC_SHA_256")
        )
        return MacTag(response["KeyId"], response["Mac"])

    def verify_mac(self, message: bytes, tag: MacTag, context: EncryptionContext) -> bool:
        data = mac_input(message, context)
        if len(tag.mac) != MAC_BYTES:
            return False
        if tag.key_id not in self._mac_key_ids:
            self._load_mac_key()  # the alias may have been repointed since we looked
            if tag.key_id not in self._mac_key_ids:
                return False
        try:
            response = self._call(
                lambda: self._client.verify_mac(
                    KeyId=tag.key_id, Message=data, Mac=tag.mac, MacAlgorithm="HMAC_SHA_256"
                )
            )
        except InvalidCiphertext:  # KMSInvalidMacException: the MAC does not match
            return False
        return response.get("MacValid") is True

    def sign(self, message: bytes) -> Signature:
        message = signable(message)
        if not self._sign_key_loaded:
            self._load_sign_key()  # creates it on first use when allowed
        response = self._call(lambda: self._client.sign(KeyId=self.sign_key_alias, Message=message, MessageType="RAW",
                                                        SigningAlgorithm="ECDSA_SHA_256"))
        return Signature(response["KeyId"], response["Signature"])

    def signing_keys(self) -> list[SigningKey]:
        if not self._sign_key_loaded:
            self._load_sign_key()
        response = self._call(lambda: self._client.get_public_key(KeyId=self.sign_key_alias))
        arn = self._call(lambda: self._client.describe_key(KeyId=self.sign_key_alias))["KeyMetadata"]["Arn"]
        return [SigningKey(arn, public_pem(response["PublicKey"]))]  # named as Sign names it: the ARN

    # -- internals ---------------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        try:
            self.current_root_id()
        except KeyNotFound:
            new_key = self._create_cmk()
            self._call(lambda: self._client.create_alias(AliasName=self.key_alias, TargetKeyId=new_key["KeyId"]))

    def _load_mac_key(self) -> None:
        metadata = self._key_behind(self.mac_key_alias, "HMAC_256", "GENERATE_VERIFY_MAC", "checkpoint MAC key")
        self._mac_key_ids = frozenset({metadata["KeyId"], metadata["Arn"]})

    def _load_sign_key(self) -> None:
        self._key_behind(self.sign_key_alias, "ECC_NIST_P256", "SIGN_VERIFY", "receipt signing key")
        self._sign_key_loaded = True

    def _key_behind(self, alias: str, spec: str, usage: str, what: str) -> dict:
        """The metadata of the key behind `alias`, created (with the alias) when missing and allowed."""
        try:
            return self._call(lambda: self._client.describe_key(KeyId=alias))["KeyMetadata"]
        except KeyNotFound:
            if not self._create_if_missing:
                raise
        metadata = self._call(lambda: self._client.create_key(
            KeySpec=spec, KeyUsage=usage, Description=f"SecureGate {what} ({alias})"))["KeyMetadata"]
        try:
            self._call(lambda: self._client.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"]))
        except KmsError as exc:
            if not _is_code(exc, "AlreadyExistsException"):
                raise
            # Another replica created it first: use theirs (ours stays unused behind no alias).
            metadata = self._call(lambda: self._client.describe_key(KeyId=alias))["KeyMetadata"]
        return metadata

    def _create_cmk(self) -> dict:
        response = self._call(
            lambda: self._client.create_key(
                KeySpec="SYMMETRIC_DEFAULT",
                KeyUsage="ENCRYPT_DECRYPT",
                Description=f"SecureGate org root key ({self.key_alias})",
            )
        )
        return response["KeyMetadata"]

    def _call(self, operation: Callable[[], T]) -> T:
        """Run one KMS request with bounded retries; translate botocore errors to kms.errors."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                return operation()
            except ClientError as exc:
                error = _map_client_error(exc)
            except _NETWORK_ERRORS as exc:
                error = ProviderUnavailable(f"AWS KMS unreachable: {exc}")
                error.__cause__ = exc
            except BotoCoreError as exc:  # e.g. no credentials: configuration, not transient
                raise KmsError(f"AWS KMS client error: {exc}") from exc
            if not error.transient or attempt == self._max_attempts:
                raise error
            delay = min(self._max_delay_s, self._base_delay_s * (2 ** (attempt - 1)))
            self._sleep(random.uniform(0, delay))  # full jitter: spread retries of many replicas
        raise AssertionError("unreachable")

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key_alias={self.key_alias!r})"


def _is_code(error: KmsError, code: str) -> bool:
    cause = error.__cause__
    return isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == code


def _map_client_error(exc: ClientError) -> KmsError:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    message = exc.response.get("Error", {}).get("Message", "") or code
    mapped: KmsError
    if code == "NotFoundException":
        mapped = KeyNotFound(f"KMS key not found: {message}")
    elif code in ("DisabledException", "KMSInvalidStateException"):
        mapped = KeyDisabled(f"KMS key unusable ({code}): {message}")
    elif code in ("InvalidCiphertextException", "IncorrectKeyException"):
        mapped = InvalidCiphertext(f"KMS rejected the blob ({code}): wrong context, key or tampered")
    elif code == "KMSInvalidMacException":
        mapped = InvalidCiphertext("KMS rejected the MAC: message, context or tag altered")
    elif code in _THROTTLE_CODES or status == 429:
        mapped = Throttled(f"KMS throttled: {message}")
    elif code in _SERVER_CODES or status >= 500:
        mapped = ProviderUnavailable(f"KMS server error ({code or status}): {message}")
    else:
        mapped = KmsError(f"KMS error ({code}): {message}")
    mapped.__cause__ = exc
    return mapped
