"""The data keys and audit MAC a shard actor uses: where they come from (the KeyService deployment) and the
ciphers one operation holds, dropped when it ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from kms import DataKey, RecordCipher

from tenancy import audit_log
from tenancy.actors.runtime import blocking_handle


class KeySource(Protocol):
    """Where data keys come from: the KeyService deployment's handle (or anything shaped like it)."""

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> DataKey: ...


class FaceKeys:
    """The record ciphers of a tenant's faces (purpose `embeddings`) by content-key version, for one operation (an
    activation, a rotation step), each fetched from the key source once; `clear()` drops the key material when the
    operation ends. Its siblings: `tenancy.personal.PersonKeys` (persons), `streams.event_index.EventKeys` (events)."""

    def __init__(self, data_key: Callable[[int | None], DataKey]) -> None:
        self._data_key = data_key
        self._ciphers: dict[int, RecordCipher] = {}

    def get(self, version: int) -> RecordCipher:
        if version not in self._ciphers:
            self._ciphers[version] = self._data_key(version).cipher()
        return self._ciphers[version]

    def current(self) -> RecordCipher:
        cipher = self._data_key(None).cipher()
        self._ciphers[cipher.key_version] = cipher
        return cipher

    def clear(self) -> None:
        self._ciphers.clear()


class KeyServiceDataKeys:
    """`data_key(version, purpose)` for one tenant through the KeyService deployment's handle (picklable)."""

    def __init__(self, keys, tenant_id: str) -> None:
        self.keys, self.tenant_id = keys, tenant_id

    def __call__(self, version: int | None, purpose: str = "embeddings") -> DataKey:
        return blocking_handle(self.keys).data_key.remote(self.tenant_id, purpose, version).result()


class KeyServiceAuditMac:
    """The provider's MAC over a tenant's audit checkpoints, through the KeyService handle (picklable)."""

    def __init__(self, keys, tenant_id: str) -> None:
        self.keys, self.tenant_id = keys, tenant_id

    def __call__(self, message: bytes) -> bytes:
        return blocking_handle(self.keys).mac.remote(message, audit_log.TENANT_PURPOSE, self.tenant_id).result()
