"""The primary's steps of the tenant-wide operations driven from outside it, one call each so searches and
enrolments run between them: a content-key rotation's re-sealing batches (tenancy/rotation.py) and a model
migration's embedding batches and switch (tenancy/migration.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kms import DataKey

from tenancy import reembed
from tenancy.actors.auditing import ShardAudit
from tenancy.actors.keys import FaceKeys
from tenancy.actors.runtime import blocking_handle
from tenancy.audit_log import AuditRecord
from tenancy.personal import PersonKeys

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard


class Resealing:
    """`shard`'s records re-sealed under the current key version from `data_key`, a batch per step."""

    def __init__(self, shard: TenantShard, data_key: Callable[..., DataKey], audit: ShardAudit) -> None:
        self.shard, self.data_key, self.audit = shard, data_key, audit

    def step(self, batch_size: int, principal: str) -> dict:
        store = self.shard.store
        ciphers = FaceKeys(self.data_key)
        current = ciphers.current()
        # Persons first (their fields and blind-index tags), a batch per step like the faces; the faces' last
        # step truncates the WAL for both.
        person_keys = PersonKeys(self.data_key)
        next(store.reencrypt_persons(person_keys, batch_size), None)
        person_keys.clear()
        persons = store.person_key_versions()
        kept = store.reencrypt_kept(ciphers.get, current, batch_size)  # kept crops and shadow vectors
        steps = store.reencrypt(ciphers.get, current, batch_size, audit=AuditRecord(principal, "key.reencrypt"))
        next(steps, None)
        self.audit.checkpoint()
        versions = store.key_versions_in_use()
        remaining = kept + sum(n for version, n in [*versions.items(), *persons.items()] if version != current.key_version)
        if remaining == 0:
            next(steps, None)  # lets the store finish: it truncates the WAL that held the old records
        ciphers.clear()
        return {"version": current.key_version, "remaining": remaining,
                "total": sum(versions.values()) + sum(persons.values())}


class MigrationSteps:
    """`shard`'s side of a model migration: shadow vectors embedded from kept crops, then the switch."""

    def __init__(self, shard: TenantShard, data_key: Callable[..., DataKey], audit: ShardAudit) -> None:
        self.shard, self.data_key, self.audit = shard, data_key, audit
        self.embedders: dict[Any, Any] = {}  # the target Embedder handles, by deployment

    def state(self, model: str) -> dict:
        store = self.shard.store
        _, missing, no_crop = store.shadow_missing(model, 0)
        return {**store.crop_counts(), "shadow": store.shadow_count(model), "missing": missing,
                "missing_without_crop": no_crop, "rejections": store.rejection_count(), "bound": store.model}

    def embed(self, model: str, dim: int, limit: int, embedder) -> dict:
        if embedder.deployment_id not in self.embedders:
            self.embedders[embedder.deployment_id] = blocking_handle(embedder)
        ciphers = FaceKeys(self.data_key)
        try:
            return reembed.next_batch(self.shard.store, ciphers, model, dim, limit, self.embedders[embedder.deployment_id])
        finally:
            ciphers.clear()  # key material is not kept beyond the batch

    def switch(self, model: str, dim: int, principal: str) -> int | None:
        shard = self.shard
        switched = shard.store.switch_model(model, dim, audit=AuditRecord(principal, "model.switch"))
        if switched is None:
            return None
        self.audit.checkpoint()
        shard.model, shard.dim = model, dim
        shard.index = None
        shard.activate()  # the index reloads: the new model's vectors, decrypted from the file
        return switched

    def abandon(self) -> None:
        self.shard.store.clear_shadow()
