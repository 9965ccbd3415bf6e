"""Envelope encryption for SecureGate.

This package imports nothing else of SecureGate's: it can be audited, tested and reused on its own.

    org root key (OEK, in a KeyProvider) -> tenant TEK -> tenant CEK v1, v2, ... -> per-call data key

Entry points: `KeyManager` (service wrapper), `Keyring` (hierarchy), `build_provider` (config),
`RecordCipher` (record encryption), `MacTag` (provider MACs for tamper-evident checkpoints), `Signature`
(provider signatures a third party checks with the public key), head anchors (kms/anchors.py) and the
typed errors in `kms.errors`.
"""

from kms.config import build_provider
from kms.errors import (
    InvalidCiphertext,
    KeyDisabled,
    KeyNotFound,
    KmsError,
    ProviderUnavailable,
    Throttled,
    is_transient,
)
from kms.keyring import DataKey, Keyring
from kms.providers.base import SIGNATURE_ALGORITHM, MacTag, Signature, SigningKey
from kms.records import InvalidRecord, RecordCipher
from kms.manager import KeyManager

__all__ = [
    "DataKey",
    "InvalidCiphertext",
    "InvalidRecord",
    "KeyDisabled",
    "KeyNotFound",
    "KeyManager",
    "Keyring",
    "KmsError",
    "MacTag",
    "SIGNATURE_ALGORITHM",
    "Signature",
    "SigningKey",
    "ProviderUnavailable",
    "RecordCipher",
    "Throttled",
    "build_provider",
    "is_transient",
]
