"""The key-provider interface: where the organisation root key (OEK) lives.

A provider never hands out its root key. It generates and wraps/unwraps 32-byte data keys under the
root, always bound to an *encryption context* (a dict[str, str] such as {"tenant_id": ..., "purpose":
"tek"}): a blob unwraps only with the exact context it was wrapped with. Blobs name the root version
they were wrapped under, so `unwrap` keeps working after `rotate_root` for every non-destroyed root.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
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

    def mac(self, message: bytes, context: EncryptionContext) -> MacTag:
        """HMAC-SHA256 over `mac_input(message, context)` under the provider's MAC key, which never leaves it."""
        ...

    def verify_mac(self, message: bytes, tag: MacTag, context: EncryptionContext) -> bool:
        """True only when `tag` authenticates `message` under `context` and a MAC key of this provider.

        False when it does not (tampered message, wrong context, forged tag, a key that is not ours);
        a KmsError when the provider could not answer (outage): an outage is not evidence of tampering.
        """
        ...

    def sign(self, message: bytes) -> Signature:
        """ECDSA P-256 / SHA-256 over `message` (at most MAX_SIGNED_BYTES) with the provider's signing key, whose
        private half never leaves it; the signature is DER, as `cryptography` and OpenSSL verify it."""
        ...

    def signing_keys(self) -> list[SigningKey]:
        """The public halves of the signing keys, the current one first (older ones still verify old signatures)."""
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


# -- MACs (tamper-evident checkpoints) --------------------------------------------------------------

_MAC_DOMAIN = b"securegate/mac/v1\x00"
_TAG_MAGIC = b"SGM\x01"
_TAG_HEADER = struct.Struct(">4sH")
MAC_BYTES = 32  # HMAC-SHA256


@dataclass(frozen=True, slots=True)
class MacTag:
    """A MAC and the provider key that made it (AWS key ARN, PKCS#11 label, local root version)."""

    key_id: str
    mac: bytes

    def to_bytes(self) -> bytes:
        """b"SGM\\x01" | key id length (u16 BE) | key id (UTF-8) | MAC: one self-describing blob to store."""
        key_id = self.key_id.encode("utf-8")
        return _TAG_HEADER.pack(_TAG_MAGIC, len(key_id)) + key_id + self.mac

    @classmethod
    def from_bytes(cls, blob: bytes) -> MacTag:
        """Parse `to_bytes` output; ValueError on anything else."""
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < _TAG_HEADER.size:
            raise ValueError("MAC tag is truncated or not bytes")
        magic, key_len = _TAG_HEADER.unpack_from(blob)
        if magic != _TAG_MAGIC or len(blob) != _TAG_HEADER.size + key_len + MAC_BYTES:
            raise ValueError("not a MAC tag")
        try:
            key_id = bytes(blob[_TAG_HEADER.size : _TAG_HEADER.size + key_len]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("MAC tag key id is not UTF-8") from exc
        return cls(key_id, bytes(blob[_TAG_HEADER.size + key_len :]))


def mac_input(message: bytes, context: EncryptionContext) -> bytes:
    """What every provider MACs: domain | context length (u32 BE) | canonical context | SHA-256(message).

    The context is length-prefixed so no (context, message) pair can pose as another. The message is
    hashed because AWS GenerateMac takes at most 4096 bytes; the same input on every provider keeps
    them interchangeable.
    """
    if not isinstance(message, (bytes, bytearray)):
        raise ValueError("MAC message must be bytes")
    context_bytes = canonical_context(context)
    return _MAC_DOMAIN + struct.pack(">I", len(context_bytes)) + context_bytes + hashlib.sha256(message).digest()


# -- signatures (receipts a third party can check) ---------------------------------------------------

SIGNATURE_ALGORITHM = "ECDSA_P256_SHA256"  # DER-encoded ECDSA over SHA-256 of the message, on NIST P-256
MAX_SIGNED_BYTES = 4096  # AWS KMS Sign's limit for a RAW message: the same on every provider


@dataclass(frozen=True, slots=True)
class Signature:
    key_id: str   # the signing key (AWS key ARN, PKCS#11 label, local root version)
    value: bytes  # DER ECDSA-Sig-Value
    algorithm: str = SIGNATURE_ALGORITHM


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    public_key_pem: str  # SubjectPublicKeyInfo, PEM
    algorithm: str = SIGNATURE_ALGORITHM


def signable(message: bytes) -> bytes:
    if not isinstance(message, (bytes, bytearray)) or not 0 < len(message) <= MAX_SIGNED_BYTES:
        raise ValueError(f"a signed message is 1..{MAX_SIGNED_BYTES} bytes")
    return bytes(message)


def public_pem(spki_der: bytes) -> str:
    """A DER SubjectPublicKeyInfo as PEM (what `cryptography`'s load_pem_public_key reads)."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_der_public_key(spki_der)
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
