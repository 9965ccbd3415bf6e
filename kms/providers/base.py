"""The key-provider interface: where the organisation root key (OEK) lives.

A provider never hands out its root key. It generates and wraps/unwraps 32-byte data keys under the
root, always bound to an *encryption context* (a dict[str, str] such as {"tenant_id": ..., "purpose":
"tek"}): a blob unwraps only with the exact context it was wrapped with. Blobs name the root version
they were wrapped under, so `unwrap` keeps working after `rotate_root` for every non-destroyed root.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from kms.errors import InvalidCiphertext

EncryptionContext = Mapping[str, str]

DATA_KEY_BYTES = 32
_MAX_WRAPPED_PLAINTEXT = 4096  # providers wrap keys, not data


@runtime_checkable
class KeyProvider(Protocol):
    """What `Keyring` needs from a root-key holder (local file, AWS KMS, PKCS#11 HSM)."""

    name: str

    def current_root_id(self) -> str:
        """Identifier of the root key new wraps go under (e.g. key ARN, token label)."""
        ...

    def generate_data_key(self, context: EncryptionContext) -> tuple[bytes, bytes]:
        """Return (32 random plaintext bytes, the same wrapped under the current root and context)."""
        ...

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> bytes:
        """Wrap caller-supplied key bytes under the current root, bound to `context`."""
        ...

    def unwrap(self, wrapped: bytes, context: EncryptionContext) -> bytes:
        """Unwrap a blob from any non-destroyed root version; wrong context -> InvalidCiphertext."""
        ...

    def rotate_root(self) -> str:
        """Create a new root version, make it current and return its id; old ones stay for unwrap."""
        ...

    def check(self) -> None:
        """Cheap reachability probe for readiness; raises ProviderUnavailable (or another KmsError)."""
        ...


def validate_context(context: EncryptionContext) -> dict[str, str]:
    """Return a plain-dict copy of `context`, refusing anything but a non-empty str -> str mapping.

    An empty context would bind a blob to nothing, which is exactly the misuse we want to make hard.
    """
    if not isinstance(context, Mapping) or not context:
        raise ValueError("encryption context must be a non-empty dict[str, str]")
    out: dict[str, str] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise ValueError("encryption context must map non-empty str keys to str values")
        out[key] = value
    return out


def canonical_context(context: EncryptionContext) -> bytes:
    """Deterministic byte encoding of a context (sorted keys, compact JSON, UTF-8) used as AAD."""
    return json.dumps(
        validate_context(context), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def validate_plaintext_key(plaintext: bytes) -> bytes:
    if not isinstance(plaintext, (bytes, bytearray)) or not 16 <= len(plaintext) <= _MAX_WRAPPED_PLAINTEXT:
        raise ValueError("wrap expects key material: 16..4096 bytes")
    return bytes(plaintext)


def require_blob(wrapped: bytes, min_len: int) -> bytes:
    if not isinstance(wrapped, (bytes, bytearray)) or len(wrapped) < min_len:
        raise InvalidCiphertext("wrapped blob is truncated or not bytes")
    return bytes(wrapped)
