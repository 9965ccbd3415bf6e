"""The primary's audit trail: each write's entry chained in the write's own transaction, entries of their own
(reads, refused writes, admin actions), and the head's checkpoints under the provider's MAC."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tenancy.audit_log import AuditRecord
from tenancy.chain import CheckpointPolicy
from tenancy.fence import StaleWriter

if TYPE_CHECKING:
    from tenancy.actors.shard import TenantShard

log = logging.getLogger("tenancy.actors")


class ShardAudit:
    """`shard`: the primary whose file holds the chain; `mac`: the provider's MAC for this tenant's checkpoints
    (None: entries are hash-chained only); `policy`: when a checkpoint is due."""

    def __init__(self, shard: TenantShard, mac: Callable[[bytes], bytes] | None, policy: CheckpointPolicy | None) -> None:
        self.shard = shard
        self.mac = mac
        self.policy = policy or CheckpointPolicy()

    def checkpoint(self, force: bool = False) -> None:
        """Checkpoint the audit head when due. After the write committed: a provider outage delays the MAC
        (the entries stay hash-linked, covered by the next checkpoint) but never fails or undoes the write."""
        try:
            self.shard.store.checkpoint_audit(self.mac, self.policy, force=force)
        except Exception:
            log.warning("tenant %s: audit checkpoint failed; the next one covers these entries", self.shard.tenant_id, exc_info=True)

    def audited(self, principal: str, action: str, write: Callable[[AuditRecord], Any]) -> Any:
        """Run `write(record)`, which chains `record` in the write's own transaction. A refused write commits
        nothing, so its audit entry (outcome: the error's name) is appended on its own."""
        record = AuditRecord(principal, action)
        try:
            result = write(record)
        except StaleWriter:
            raise  # the file is a newer actor's: not even the refusal is written from here
        except Exception as exc:
            self.record(principal, action, type(exc).__name__)
            raise
        self.checkpoint()
        return result

    def record(self, principal: str, action: str, outcome: str = "ok", counts: dict | None = None) -> None:
        """An audit entry of its own: durable on return."""
        self.shard.require_primary("record_audit")
        self.shard.activation.open_store().record_audit(AuditRecord(principal, action, outcome, dict(counts or {})))
        self.checkpoint()
