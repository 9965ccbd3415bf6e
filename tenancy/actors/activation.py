"""Activation and reconciliation: a shard's faces decrypted from the file into its in-memory FaceIndex (on first
use, and again after Ray restarts it), the primary's store opened as the file's one writer, and a shard's index
brought back in line with the file when it is out of step."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kms import DataKey

from tenancy.actors.auditing import ShardAudit
from tenancy.actors.keys import FaceKeys
from tenancy.actors.runtime import reconstructed
from tenancy.index import FaceIndex
from tenancy.personal import PersonKeys
from tenancy.store import TenantStore

if TYPE_CHECKING:
    from tenancy.actors.forwarding import Forwarder
    from tenancy.actors.shard import TenantShard

log = logging.getLogger("tenancy.actors")


class Activation:
    """Fills `shard`'s store (the primary's), writer, index and external ids from the file at `path`, with the
    tenant's keys from `data_key`; `forwarder` reaches the other shards (reconciled after a primary's restart)."""

    def __init__(self, shard: TenantShard, path: Path, data_key: Callable[..., DataKey], index_options: dict[str, Any],
                 audit: ShardAudit, forwarder: Forwarder) -> None:
        self.shard, self.path, self.data_key = shard, path, data_key
        self.index_options, self.audit, self.forwarder = index_options, audit, forwarder

    def activate(self) -> None:
        shard = self.shard
        if shard.index is not None:
            return
        started = time.perf_counter()
        store = self.open_store() if shard.primary else TenantStore.open(self.path, shard.tenant_id, shard.model, shard.dim)
        ciphers = FaceKeys(self.data_key)
        person_keys = PersonKeys(self.data_key)
        try:
            loaded = store.load_all(ciphers.get, (shard.shard, shard.shards) if shard.shards > 1 else None)
            rejections = store.load_rejections(ciphers.get)  # all of them, on every shard (tenancy/index)
            if shard.primary:  # persons written in clear before schema v3 are sealed now, by the file's one writer
                sealed = store.seal_legacy_persons(person_keys)
                if sealed:
                    log.info("tenant %s: sealed %d persons stored in clear by an older version", shard.tenant_id, sealed)
            wanted = None if shard.primary else set(loaded.person_ids)  # a shard names only its own persons
            external_ids = store.external_ids(person_keys, wanted)
        except BaseException:
            if store is not shard.store:
                store.close()
            raise
        finally:
            ciphers.clear()  # key material is not kept beyond activation
            person_keys.clear()
        shard.index = FaceIndex.build(loaded.face_ids, loaded.person_ids, loaded.vectors.reshape(-1, shard.dim), **self.index_options)
        shard.index.add_rejections(rejections.face_ids, rejections.person_ids, rejections.vectors)
        shard.external_ids = external_ids
        if not shard.primary:
            store.close()  # one writer per file: a shard only reads it, at activation and reconciliation
        shard.activation_s = time.perf_counter() - started
        shard.report_memory()
        log.info("tenant %s shard %d/%d active: %d faces in %.2fs", shard.tenant_id, shard.shard, shard.shards,
                 len(shard.index), shard.activation_s)
        if shard.primary and shard.shards > 1 and reconstructed():
            # A crash of the primary may have fallen between a commit and its forward: bring every shard in
            # line with the file before serving.
            for k in range(1, shard.shards):
                self.forwarder.forward(k, "reconcile")

    def open_store(self) -> TenantStore:
        """The primary's store (the file's one writer), opened without decrypting anything; a new or reopened
        audit chain gets its head checkpointed (a crash may have left entries after the last checkpoint)."""
        shard = self.shard
        if shard.store is None:  # (tenancy.sqlite.connect creates missing directories 0700)
            store = TenantStore.open(self.path, shard.tenant_id, shard.model, shard.dim)
            try:  # from here on a predecessor that is still alive somewhere cannot write (tenancy/fence.py)
                shard.writer = store.claim_writer()
            except BaseException:
                store.close()
                raise
            shard.store = store
            self.audit.checkpoint(force=True)
        return shard.store

    def reconcile(self) -> dict:
        shard = self.shard
        if shard.index is None:
            self.activate()
            return {"reloaded": True}
        with TenantStore.open(self.path, shard.tenant_id, shard.model, shard.dim) as store:
            stored = store.face_ids((shard.shard, shard.shards))
            rejections = store.rejection_ids()
        if stored == shard.index.face_id_set() and rejections == shard.index.rejection_id_set():
            return {"reloaded": False}
        log.warning("tenant %s shard %d out of step with the file: reloading", shard.tenant_id, shard.shard)
        shard.close()
        self.activate()
        return {"reloaded": True}
