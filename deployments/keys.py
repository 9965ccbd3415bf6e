"""KeyService deployment: the only process that talks to AWS KMS or the HSM.

Thin: `kms.KeyManager` does the work (hierarchy, cache, bounded provider calls). Here its timing hook feeds
the Prometheus metrics, and provider failures that are the dependency's fault become 503 `kms_unavailable`;
the rest keep their meaning.
"""

from __future__ import annotations

import logging

from ray import serve

import kms
from securegate import errors, metrics
from securegate.settings import Settings

log = logging.getLogger("ray.serve")


def key_config(settings: Settings) -> tuple[dict, str]:
    """(kms.KeyManager config, keystore path) from SecureGate settings; the key store and the local root key
    live in `keys.keystore_dir` ({data_dir}/keys unless set)."""
    keys_dir = settings.keys_dir()
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {"provider": settings.keys.provider, **settings.keys.options,
              "cache_ttl_s": settings.keys.cache_ttl_s,
              "max_concurrent_provider_calls": settings.keys.max_concurrent_provider_calls}
    if settings.keys.provider == "local":
        config.setdefault("root_key_path", str(keys_dir / "root.key"))
    return config, str(keys_dir / "keystore.db")


def _record(operation: str, seconds: float, error: str | None) -> None:
    """kms.KeyManager's observer: service operations and provider calls (`provider.<op>`) as Ray metrics."""
    metrics.kms_calls_total().inc(tags={"operation": operation, "outcome": error or "ok"})
    metrics.kms_call_seconds().observe(seconds, tags={"operation": operation})


def _translate(call):
    try:
        return call()
    except kms.KmsError as exc:
        if kms.is_transient(exc):
            raise errors.KmsUnavailable(f"key service unavailable: {type(exc).__name__}") from None
        if isinstance(exc, kms.KeyNotFound):
            raise errors.NotFound(f"key not found: {exc}") from None
        raise errors.ApiError(f"key service error: {type(exc).__name__}: {exc}") from None


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
class KeyService:
    def __init__(self, settings: dict) -> None:
        config, keystore = key_config(Settings.model_validate(settings))
        self.manager = kms.KeyManager(config, keystore, observe=_record)
        log.info("KeyService ready: provider %s, keystore %s", config["provider"], keystore)

    def create_tenant(self, tenant_id: str) -> None:
        _translate(lambda: self.manager.create_tenant(tenant_id))

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> kms.DataKey:
        return _translate(lambda: self.manager.data_key(tenant_id, purpose, version))

    def versions(self, tenant_id: str) -> list[int]:
        return _translate(lambda: self.manager.versions(tenant_id))

    def rotate_root(self) -> dict:
        return _translate(self.manager.rotate_root)

    def rotate_tenant(self, tenant_id: str) -> int:
        return _translate(lambda: self.manager.rotate_tenant(tenant_id))

    def retire_version(self, tenant_id: str, version: int) -> None:
        _translate(lambda: self.manager.retire_version(tenant_id, version))

    def destroy_tenant(self, tenant_id: str) -> None:
        _translate(lambda: self.manager.destroy_tenant(tenant_id))

    def status(self) -> dict:
        return _translate(self.manager.status)

    def mac(self, message: bytes, purpose: str, tenant_id: str | None = None) -> bytes:
        """A tag (MacTag.to_bytes()) for `message` bound to purpose and tenant (None: the organisation)."""
        return _translate(lambda: self.manager.mac(message, purpose, tenant_id).to_bytes())

    def verify_mac(self, message: bytes, tag: bytes, purpose: str, tenant_id: str | None = None) -> bool:
        return _translate(lambda: self.manager.verify_mac(message, tag, purpose, tenant_id))

    def sign(self, message: bytes) -> dict:
        """{key_id, algorithm, value (DER bytes)}: the provider's ECDSA signature over `message`."""
        signature = _translate(lambda: self.manager.sign(message))
        return {"key_id": signature.key_id, "algorithm": signature.algorithm, "value": signature.value}

    def signing_keys(self) -> list[dict]:
        """The public keys that check our signatures ({key_id, algorithm, public_key_pem}), the current one first."""
        return [{"key_id": k.key_id, "algorithm": k.algorithm, "public_key_pem": k.public_key_pem}
                for k in _translate(self.manager.signing_keys)]

    def anchor(self, name: str, seq: int, record: bytes) -> bool:
        """Keep a log's newest checkpoint as its head anchor in the key store (only ever forward)."""
        return _translate(lambda: self.manager.anchor(name, seq, record))

    def anchored(self, name: str) -> tuple[int, bytes] | None:
        return _translate(lambda: self.manager.anchored(name))

    def ready(self) -> bool:
        return self.manager.ready()
