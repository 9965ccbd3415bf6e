"""`KeyManager`: the key hierarchy as a service object, wrapped thinly by the KeyService Serve deployment.

Plain Python (no Ray import). Adds what a shared service needs around `Keyring`: a bound on concurrent
provider calls (KMS quotas and HSM sessions are scarce), a timing hook per call, and a readiness probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kms.anchors import HeadAnchors
from kms.config import build_provider
from kms.errors import KmsError, ProviderUnavailable
from kms.keyring import DataKey, Keyring
from kms.providers.base import EncryptionContext, KeyProvider, MacTag, Signature, SigningKey

T = TypeVar("T")


# What a KeyManager reports after each operation: (operation, seconds, error type name or None). The
# deployment turns these into the service's Prometheus metrics; kms itself keeps no metrics system.
Observer = Callable[[str, float, "str | None"], None]


def _ignore(operation: str, seconds: float, error: str | None) -> None:
    pass


def _timed(observe: Observer, operation: str, call: Callable[[], T]) -> T:
    start = time.perf_counter()
    error: str | None = None
    try:
        return call()
    except Exception as exc:
        error = type(exc).__name__
        raise
    finally:
        observe(operation, time.perf_counter() - start, error)


class _BoundedProvider:
    """Provider proxy: at most N provider calls in flight; each call timed under `provider.<op>`."""

    def __init__(self, inner: KeyProvider, observe: Observer, max_concurrent: int, queue_timeout_s: float) -> None:
        self.inner = inner
        self.name = inner.name
        self._observe = observe
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._queue_timeout_s = queue_timeout_s

    def _bounded(self, operation: str, call: Callable[[], T]) -> T:
        def run() -> T:
            if not self._slots.acquire(timeout=self._queue_timeout_s):
                # Saturated for too long: surface as transient so the API answers 503, not a hang.
                raise ProviderUnavailable(f"no free provider slot within {self._queue_timeout_s}s")
            try:
                return call()
            finally:
                self._slots.release()

        return _timed(self._observe, f"provider.{operation}", run)

    def current_root_id(self) -> str:
        return self._bounded("current_root_id", self.inner.current_root_id)

    def generate_data_key(self, context: EncryptionContext) -> tuple[bytes, bytes]:
        return self._bounded("generate_data_key", lambda: self.inner.generate_data_key(context))

    def wrap(self, plaintext: bytes, context: EncryptionContext) -> bytes:
        return self._bounded("wrap", lambda: self.inner.wrap(plaintext, context))

    def unwrap(self, wrapped: bytes, context: EncryptionContext) -> bytes:
        return self._bounded("unwrap", lambda: self.inner.unwrap(wrapped, context))

    def rotate_root(self) -> str:
        return self._bounded("rotate_root", self.inner.rotate_root)

    def check(self) -> None:
        self._bounded("check", self.inner.check)

    def mac(self, message: bytes, context: EncryptionContext) -> MacTag:
        return self._bounded("mac", lambda: self.inner.mac(message, context))

    def verify_mac(self, message: bytes, tag: MacTag, context: EncryptionContext) -> bool:
        return self._bounded("verify_mac", lambda: self.inner.verify_mac(message, tag, context))

    def sign(self, message: bytes) -> Signature:
        return self._bounded("sign", lambda: self.inner.sign(message))

    def signing_keys(self) -> list[SigningKey]:
        return self._bounded("signing_keys", self.inner.signing_keys)


class KeyManager:
    """Owns the provider and the Keyring; every public method and provider call is reported to `observe`.

    config: {"provider": ..., <provider options>} plus optional service keys
    `max_concurrent_provider_calls` (default 8), `provider_queue_timeout_s` (default 5.0),
    `cache_ttl_s` (default 60.0).
    """

    _SERVICE_KEYS = ("max_concurrent_provider_calls", "provider_queue_timeout_s", "cache_ttl_s")

    def __init__(self, config: Mapping[str, Any], keystore_path: str, *, provider: KeyProvider | None = None,
                 observe: Observer = _ignore) -> None:
        provider_config = {k: v for k, v in config.items() if k not in self._SERVICE_KEYS}
        max_concurrent = int(config.get("max_concurrent_provider_calls", 8))
        if max_concurrent < 1:
            raise ValueError("max_concurrent_provider_calls must be >= 1")
        self._observe = observe
        inner = provider if provider is not None else build_provider(provider_config)
        self._provider = _BoundedProvider(
            inner, observe, max_concurrent, float(config.get("provider_queue_timeout_s", 5.0))
        )
        self.keyring = Keyring(self._provider, keystore_path, cache_ttl_s=float(config.get("cache_ttl_s", 60.0)))
        self.anchors = HeadAnchors(keystore_path)  # newest heads of logs kept outside their own files

    def create_tenant(self, tenant_id: str) -> None:
        _timed(self._observe, "create_tenant", lambda: self.keyring.create_tenant(tenant_id))

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> DataKey:
        return _timed(self._observe, "data_key", lambda: self.keyring.data_key(tenant_id, purpose, version))

    def current_version(self, tenant_id: str) -> int:
        return _timed(self._observe, "current_version", lambda: self.keyring.current_version(tenant_id))

    def versions(self, tenant_id: str) -> list[int]:
        return _timed(self._observe, "versions", lambda: self.keyring.versions(tenant_id))

    def rotate_root(self) -> dict:
        return _timed(self._observe, "rotate_root", self.keyring.rotate_root)

    def rotate_tenant(self, tenant_id: str) -> int:
        return _timed(self._observe, "rotate_tenant", lambda: self.keyring.rotate_tenant(tenant_id))

    def retire_version(self, tenant_id: str, version: int) -> None:
        _timed(self._observe, "retire_version", lambda: self.keyring.retire_version(tenant_id, version))

    def destroy_tenant(self, tenant_id: str) -> None:
        _timed(self._observe, "destroy_tenant", lambda: self.keyring.destroy_tenant(tenant_id))

    def status(self) -> dict:
        return _timed(self._observe, "status", self.keyring.status)

    def mac(self, message: bytes, purpose: str, tenant_id: str | None = None) -> MacTag:
        """MAC `message` under the provider's MAC key, bound to (purpose, tenant or the org).

        A tag made for one purpose or tenant does not verify for another: the binding is MACed with the message.
        """
        context = mac_context(purpose, tenant_id)
        return _timed(self._observe, "mac", lambda: self._provider.mac(message, context))

    def verify_mac(self, message: bytes, tag: MacTag | bytes, purpose: str, tenant_id: str | None = None) -> bool:
        """True only if `tag` (a MacTag or its `to_bytes()`) was made by `mac` for this message, purpose and tenant.

        A malformed tag is False; a provider outage raises (transient KmsError), it is not a verdict."""
        context = mac_context(purpose, tenant_id)
        if not isinstance(tag, MacTag):
            try:
                tag = MacTag.from_bytes(tag)
            except ValueError:
                return False
        return _timed(self._observe, "verify_mac", lambda: self._provider.verify_mac(message, tag, context))

    def sign(self, message: bytes) -> Signature:
        """ECDSA P-256 / SHA-256 over `message` with the provider's signing key (anyone holding its public key,
        `signing_keys`, can check it without us). The caller makes the message say what it is."""
        return _timed(self._observe, "sign", lambda: self._provider.sign(message))

    def signing_keys(self) -> list[SigningKey]:
        """The public keys that check our signatures, the current one first."""
        return _timed(self._observe, "signing_keys", self._provider.signing_keys)

    def anchor(self, name: str, seq: int, record: bytes) -> bool:
        """Keep `record` (a log's checkpoint, MACed by the provider) as the head anchor `name`, if it is beyond
        the stored one; False when it is not (an anchor never moves back)."""
        return _timed(self._observe, "anchor", lambda: self.anchors.advance(name, seq, record))

    def anchored(self, name: str) -> tuple[int, bytes] | None:
        """(seq, record) of the head anchor `name`, or None."""
        return _timed(self._observe, "anchored", lambda: self.anchors.get(name))

    def ready(self) -> bool:
        """Readiness: the provider answers a cheap probe. Never raises."""
        try:
            self._provider.check()
            return True
        except KmsError:
            return False

    def close(self) -> None:
        self.anchors.close()
        self.keyring.close()


def mac_context(purpose: str, tenant_id: str | None) -> dict[str, str]:
    """The context a MAC is bound to: the purpose and either one tenant or the organisation."""
    if not isinstance(purpose, str) or not purpose:
        raise ValueError("MAC purpose must be a non-empty string")
    if tenant_id is None:
        return {"purpose": purpose, "scope": "org"}
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("tenant_id must be a non-empty string or None (organisation)")
    return {"purpose": purpose, "scope": "tenant", "tenant_id": tenant_id}
