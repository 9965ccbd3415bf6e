"""Local root-key file provider: the embedded default for development and tests.

NOT FOR PRODUCTION. The root key sits in a file on the same disk as the data it protects (mode 0600,
created on first use), so anyone who can read the data directory as the service user can read every
key. Use the `aws` or `pkcs11` provider in production.

File format (JSON): {"format": "securegate-local-root/1", "current": N, "keys": {"1": base64, ...}}.
Blob format: b"SGL\\x01" | root version (u32 BE) | 12-byte nonce | AES-256-GCM(ciphertext + tag), with
AAD = the 8-byte header + canonical context, so the version and the context are both authenticated.

MACs: HMAC-SHA256 under a key derived from root version N with HKDF (info "securegate/local-mac/v1"), key id
`local:vN`; so a MAC key lives, rotates and is lost exactly with its root key file (dev only, as above).
Signatures: ECDSA P-256 with a private key derived the same way (info "securegate/local-sign/v1"), key id
`local:vN`: every root version's public key is published, so receipts signed before a rotation still verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
import struct
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms.errors import InvalidCiphertext, KeyNotFound, KmsError, ProviderUnavailable
from kms.providers.base import (
    DATA_KEY_BYTES,
    EncryptionContext,
    MacTag,
    Signature,
    SigningKey,
    canonical_context,
    mac_input,
    require_blob,
    signable,
    validate_plaintext_key,
)

_FILE_FORMAT = "securegate-local-root/1"
_MAGIC = b"SGL\x01"
_HEADER = struct.Struct(">4sI")
_NONCE_BYTES = 12
_ROOT_KEY_BYTES = 32
_MAC_KEY_INFO = b"securegate/local-mac/v1"
_SIGN_KEY_INFO = b"securegate/local-sign/v1"
_MAC_KEY_ID = re.compile(r"local:v(\d+)\Z")


class LocalKeyProvider:
    """Root keys in a local 0600 JSON file; wraps with AES-256-GCM. Development only (see module doc)."""

    name = "local"

    def __init__(self, root_key_path: str | os.PathLike[str]) -> None:
        self._path = Path(root_key_path)
        self._lock = threading.Lock()
        self._keys: dict[int, AESGCM] = {}
        self._mac_keys: dict[int, bytes] = {}
        self._sign_keys: dict[int, ec.EllipticCurvePrivateKey] = {}
        self._current = 0
        self._load_or_create()

    # -- KeyProvider -------------------------------------------------------------------------------
    def current_root_id(self) -> str:
        return f"local:v{self._current}"

    def generate_data_key(self, context: EncryptionContext) -> tuple[bytes, bytes]:
        plaintext = os.urandom(DATA_KEY_BYTES)
        return plaintext, self.wrap(plaintext, context)

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> bytes:
        plaintext = validate_plaintext_key(plaintext)
        aad_context = canonical_context(context)
        with self._lock:
            version, aead = self._current, self._keys[self._current]
        header = _HEADER.pack(_MAGIC, version)
        nonce = os.urandom(_NONCE_BYTES)
        return header + nonce + aead.encrypt(nonce, plaintext, header + aad_context)

    def unwrap(self, wrapped: bytes, context: EncryptionContext) -> bytes:
        wrapped = require_blob(wrapped, _HEADER.size + _NONCE_BYTES + 16)
        aad_context = canonical_context(context)
        magic, version = _HEADER.unpack_from(wrapped)
        if magic != _MAGIC:
            raise InvalidCiphertext("not a local-provider blob")
        aead = self._keys.get(version)
        if aead is None:
            self._load_or_create()  # another process may have rotated the root since we loaded
            aead = self._keys.get(version)
            if aead is None:
                raise KeyNotFound(f"local root key version {version} does not exist")
        header = wrapped[: _HEADER.size]
        nonce = wrapped[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        try:
            return aead.decrypt(nonce, wrapped[_HEADER.size + _NONCE_BYTES :], header + aad_context)
        except InvalidTag as exc:
            raise InvalidCiphertext("blob failed authentication (tampered or wrong context)") from exc

    def rotate_root(self) -> str:
        with self._lock:
            document = self._read_document()
            keys = dict(document["keys"])
            new_version = max(int(v) for v in keys) + 1
            keys[str(new_version)] = base64.b64encode(os.urandom(_ROOT_KEY_BYTES)).decode()
            self._write_document({"format": _FILE_FORMAT, "current": new_version, "keys": keys})
            self._apply(keys, new_version)
        return self.current_root_id()

    def check(self) -> None:
        if not self._path.is_file():
            raise ProviderUnavailable(f"local root key file {self._path} is missing")

    def mac(self, message: bytes, context: EncryptionContext) -> MacTag:
        data = mac_input(message, context)
        with self._lock:
            version, key = self._current, self._mac_keys[self._current]
        return MacTag(f"local:v{version}", hmac.digest(key, data, hashlib.sha256))

    def verify_mac(self, message: bytes, tag: MacTag, context: EncryptionContext) -> bool:
        data = mac_input(message, context)
        match = _MAC_KEY_ID.match(tag.key_id)
        if match is None:
            return False  # not a key of this provider
        version = int(match.group(1))
        key = self._mac_keys.get(version)
        if key is None:
            self._load_or_create()  # another process may have rotated the root since we loaded
            key = self._mac_keys.get(version)
            if key is None:
                return False
        return hmac.compare_digest(hmac.digest(key, data, hashlib.sha256), tag.mac)

    def sign(self, message: bytes) -> Signature:
        message = signable(message)
        with self._lock:
            version, key = self._current, self._sign_keys[self._current]
        return Signature(f"local:v{version}", key.sign(message, ec.ECDSA(hashes.SHA256())))

    def signing_keys(self) -> list[SigningKey]:
        with self._lock:
            current, keys = self._current, dict(self._sign_keys)
        return [SigningKey(f"local:v{v}", _public_pem(keys[v]))
                for v in sorted(keys, key=lambda v: (v != current, -v))]

    # -- file handling -----------------------------------------------------------------------------
    def _load_or_create(self) -> None:
        with self._lock:
            if not self._path.exists():
                self._create()
            document = self._read_document()
            self._apply(document["keys"], int(document["current"]))

    def _apply(self, keys: dict[str, str], current: int) -> None:
        raw = {int(v): base64.b64decode(k) for v, k in keys.items()}
        self._keys = {v: AESGCM(k) for v, k in raw.items()}
        # A separate key per use: the root never MACs directly, so no AES-GCM/HMAC key is shared.
        self._mac_keys = {v: _derive_mac_key(k) for v, k in raw.items()}
        self._sign_keys = {v: _derive_sign_key(k) for v, k in raw.items()}
        if current not in self._keys:
            raise KmsError(f"{self._path}: current root version {current} has no key")
        self._current = current

    def _create(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        document = {
            "format": _FILE_FORMAT,
            "current": 1,
            "keys": {"1": base64.b64encode(os.urandom(_ROOT_KEY_BYTES)).decode()},
        }
        try:
            # O_EXCL: two processes starting at once must not each create (and half-overwrite) a root.
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())

    def _read_document(self) -> dict:
        try:
            mode = self._path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KmsError(f"{self._path} must be mode 0600 (it is {stat.S_IMODE(mode):o})")
            document = json.loads(self._path.read_text())
        except OSError as exc:
            raise ProviderUnavailable(f"cannot read local root key file {self._path}: {exc}") from exc
        if document.get("format") != _FILE_FORMAT or not document.get("keys"):
            raise KmsError(f"{self._path} is not a {_FILE_FORMAT} file")
        return document

    def _write_document(self, document: dict) -> None:
        # Write-then-rename so a crash never leaves a truncated file (which would lose every root key).
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)

    def __repr__(self) -> str:
        return f"LocalKeyProvider(path={str(self._path)!r}, current=v{self._current})"


def _derive_mac_key(root_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_MAC_KEY_INFO).derive(root_key)


def _derive_sign_key(root_key: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from the root: HKDF output reduced into [1, n-1] (48 bytes, so the bias is negligible)."""
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    seed = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=_SIGN_KEY_INFO).derive(root_key)
    return ec.derive_private_key(int.from_bytes(seed, "big") % (order - 1) + 1, ec.SECP256R1())


def _public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
