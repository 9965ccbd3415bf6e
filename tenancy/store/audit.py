"""The tenant's audit chain as the store writes it: an entry commits (or rolls back) with the write it
records, in the same transaction (tenancy/audit_log.py holds the chain itself)."""

from __future__ import annotations

import time
from collections.abc import Callable

import apsw

from tenancy import audit_log
from tenancy import chain
from tenancy.audit_log import AuditRecord


class StoreAudit:
    def __init__(self, conn: apsw.Connection, tenant_id: str) -> None:
        self._conn = conn
        self.chain_id = audit_log.tenant_chain_id(tenant_id)

    def append(self, record: AuditRecord | None) -> None:
        """Chain `record` inside the caller's open transaction: it commits (or rolls back) with the write."""
        if record is not None:
            audit_log.append(self._conn, self.chain_id, record.body(time.time()))

    def record(self, record: AuditRecord) -> None:
        """An audit entry on its own (a read, a refused write, an admin action on the tenant); durable on return."""
        with self._conn:
            self.append(record)

    def events(self, since: int = 0, limit: int = 100) -> list[dict]:
        return audit_log.events(self._conn, since, limit)

    def checkpoint(self, mac: Callable[[bytes], bytes] | None, policy: chain.CheckpointPolicy,
                   *, force: bool = False) -> chain.Checkpoint | None:
        """MAC the audit chain's head when `policy` says so (or `force`, if it moved since the last one)."""
        return audit_log.checkpoint_if_due(self._conn, self.chain_id, mac, policy, force=force)

    def verify(self, verify_tag: Callable[[bytes, bytes], bool]) -> chain.VerifyResult:
        return audit_log.verify(self._conn, self.chain_id, verify_tag)
