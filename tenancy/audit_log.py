"""Audit logs as hash chains (tenancy/chain.py) in SQLite: a tenant's inside its own store file, the org's apart.

A tenant's audit lives in the tables `audit_chain` and `audit_checkpoints` of its `embeddings.db` (created by
tenancy/store/schema.py's migration v2) and is written by the one writer of that file, the tenant's TenantShard,
in the same transaction as the change it records: a committed face has its audit entry, a rolled-back one
has none (issue 17 §4; before, the audit was a separate file written after the commit).

The org audit (`{data_dir}/org_audit.db`, `OrgAudit`) is owned by the TenantService: admin actions and admin
reads, root-key rotations, the erasure receipt of each deleted tenant (which therefore outlives the tenant's
file), and a mirror of each tenant chain's newest checkpoint (`audit.mirror`).

Truncation (issue 23 §5). A chain's own checkpoints live in its own file, so cutting its newest entries together
with their checkpoints leaves a shorter chain that verifies. Each chain's newest checkpoint is therefore also
kept where its file's writer cannot reach it, and verification adds it to the file's own (`outside`):
- a tenant chain's in the org audit: the TenantService mirrors it there on its housekeeping schedule and
  when the tenant's actor closes (`OrgAudit.mirror`, `OrgAudit.mirrored`);
- the org chain's in the key store, next to the keys (kms/anchors.py): the org audit checkpoints every entry
  and anchors each checkpoint, and an anchor only ever moves forward.
A checkpoint found outside that names entries the file no longer has is `truncated`; one whose head the file
disagrees with is `rewritten`.

Entries carry who (principal), what (action), the outcome and counts or ids: never a name, an external
id, metadata, an image or a vector. Checkpoints of a chain's head are MACed by the key provider (purpose
`audit-checkpoint` bound to the tenant; `org-audit` for the org chain) on `CheckpointPolicy`'s schedule, when
a chain is created, and at shutdown.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from tenancy import chain, sqlite

# Only these keys may appear in a tenant event's counts: numbers and short labels, never payloads.
ALLOWED_COUNT_KEYS = {"faces", "matches", "persons", "deleted", "threshold", "top_k", "version", "remaining", "rejections"}
# Only these keys may appear in a tenant event's ids: the random ids of the rows a correction touched (they name
# no one), so the audit says which persons were merged or which face moved where.
ALLOWED_ID_KEYS = {"person_id", "merged_person_id", "to_person_id", "face_id"}

TENANT_PURPOSE = "audit-checkpoint"
ORG_PURPOSE = "org-audit"
ORG_CHAIN_ID = "org"
MIRROR_ACTION = "audit.mirror"  # an org entry holding a tenant chain's checkpoint
# The org audit is written at the rate of admin actions: every entry is checkpointed (and anchored) at once.
ORG_POLICY = chain.CheckpointPolicy(every_entries=1)

AUDIT_TABLES = """
CREATE TABLE IF NOT EXISTS audit_chain (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,  -- storage order, apart from seq, so a reorder shows
    seq        INTEGER NOT NULL UNIQUE,
    body       BLOB NOT NULL,
    prev_hash  BLOB NOT NULL,
    entry_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    seq       INTEGER NOT NULL,
    head_hash BLOB NOT NULL,
    at        REAL NOT NULL,
    tag       BLOB NOT NULL
);
"""


def tenant_chain_id(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit event before it is chained: who, what, outcome, counts (numbers only), and for corrections
    the ids of the rows touched (`ids`, written only when set, so entries without them keep their old shape)."""

    principal: str
    action: str
    outcome: str = "ok"
    counts: dict[str, float] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def body(self, at: float) -> bytes:
        safe = {k: v for k, v in self.counts.items() if k in ALLOWED_COUNT_KEYS and isinstance(v, (int, float))}
        body = {"at": at, "actor": self.principal, "action": self.action, "outcome": self.outcome, "counts": safe}
        ids = {k: v for k, v in self.ids.items() if k in ALLOWED_ID_KEYS and isinstance(v, str)}
        if ids:
            body["ids"] = ids
        return chain.canonical_body(body)

    def with_counts(self, **counts: float) -> AuditRecord:
        return AuditRecord(self.principal, self.action, self.outcome, {**self.counts, **counts}, dict(self.ids))

    def with_ids(self, **ids: str) -> AuditRecord:
        return AuditRecord(self.principal, self.action, self.outcome, dict(self.counts), {**self.ids, **ids})


# ---- a chain in an apsw connection: the caller holds the transaction (and any lock) -----------------------
def append(conn: apsw.Connection, chain_id: str, body: bytes) -> chain.ChainEntry:
    """Append `body` after the stored head. Call inside the transaction of the write it records."""
    row = conn.execute("SELECT seq, body, prev_hash, entry_hash FROM audit_chain ORDER BY seq DESC LIMIT 1").fetchone()
    entry = chain.next_entry(chain_id, chain.ChainEntry(*row) if row else None, body)
    conn.execute("INSERT INTO audit_chain (seq, body, prev_hash, entry_hash) VALUES (?, ?, ?, ?)",
                 (entry.seq, entry.body, entry.prev_hash, entry.entry_hash))
    return entry


def head(conn: apsw.Connection) -> chain.ChainEntry | None:
    row = conn.execute("SELECT seq, body, prev_hash, entry_hash FROM audit_chain ORDER BY seq DESC LIMIT 1").fetchone()
    return chain.ChainEntry(*row) if row else None


def last_checkpoint(conn: apsw.Connection) -> chain.Checkpoint | None:
    row = conn.execute("SELECT seq, head_hash, at, tag FROM audit_checkpoints ORDER BY seq DESC, id DESC LIMIT 1").fetchone()
    return chain.Checkpoint(*row) if row else None


def store_checkpoint(conn: apsw.Connection, checkpoint: chain.Checkpoint) -> None:
    conn.execute("INSERT INTO audit_checkpoints (seq, head_hash, at, tag) VALUES (?, ?, ?, ?)",
                 (checkpoint.seq, checkpoint.head_hash, checkpoint.at, checkpoint.tag))


def events(conn: apsw.Connection, since: int = 0, limit: int = 100) -> list[dict]:
    """Entries after sequence number `since`, decoded (sequence numbers never repeat, timestamps may)."""
    rows = conn.execute("SELECT seq, body FROM audit_chain WHERE seq > ? ORDER BY seq LIMIT ?", (since, limit)).fetchall()
    return [{"seq": seq, **json.loads(bytes(body))} for seq, body in rows]


def read_chain(conn: apsw.Connection) -> tuple[list[chain.ChainEntry], list[chain.Checkpoint]]:
    """Entries in storage order (a reorder shows) and checkpoints."""
    entries = [chain.ChainEntry(*row) for row in conn.execute("SELECT seq, body, prev_hash, entry_hash FROM audit_chain ORDER BY id")]
    checkpoints = [chain.Checkpoint(*row) for row in conn.execute("SELECT seq, head_hash, at, tag FROM audit_checkpoints")]
    return entries, checkpoints


def with_outside(checkpoints: list[chain.Checkpoint], outside: chain.Checkpoint | None) -> list[chain.Checkpoint]:
    """The file's checkpoints and the copy kept outside it (a mirror, an anchor), once."""
    if outside is None or any(c == outside for c in checkpoints):
        return list(checkpoints)
    return [*checkpoints, outside]


def verify(conn: apsw.Connection, chain_id: str, verify_tag: Callable[[bytes, bytes], bool]) -> chain.VerifyResult:
    """The stored chain and checkpoints checked by `tenancy.chain.verify`."""
    with conn:  # one snapshot
        entries, checkpoints = read_chain(conn)
    return chain.verify(chain_id, entries, checkpoints, verify_tag)


def checkpoint_if_due(conn: apsw.Connection, chain_id: str, mac: Callable[[bytes], bytes] | None,
                      policy: chain.CheckpointPolicy, *, force: bool = False) -> chain.Checkpoint | None:
    """Checkpoint the head when the policy says so (or `force`: at shutdown, for a receipt, for a new chain)."""
    if mac is None:
        return None
    current, last, now = head(conn), last_checkpoint(conn), time.time()
    current_seq = current.seq if current else 0
    if not (policy.due(current_seq, last, now) or (force and (last is None or current_seq > last.seq))):
        return None
    checkpoint = chain.make_checkpoint(chain_id, current, mac, now)
    with conn:
        store_checkpoint(conn, checkpoint)
    return checkpoint


# ---- the org audit ---------------------------------------------------------------------------------------
class OrgAudit:
    """`{data_dir}/org_audit.db`: the organisation's audit chain (admin actions, root-key rotations, erasure
    receipts). `mac`/`verify_tag` are the provider's, bound to purpose `org-audit` and no tenant."""

    def __init__(self, path: str | Path, *, policy: chain.CheckpointPolicy | None = None, vfs: str | None = None) -> None:
        self.path = Path(path)
        self.policy = policy or ORG_POLICY
        self._lock = threading.Lock()  # an apsw connection is for one thread at a time
        self._db = sqlite.connect(self.path, vfs=vfs)
        # Every TenantSupervisor replica appends here (admin reads too): a write transaction takes the write lock when it
        # begins, so reading the head and appending after it never meets another replica's append (SQLITE_BUSY).
        self._db.transaction_mode = "IMMEDIATE"
        with self._db:
            self._db.execute(AUDIT_TABLES)
            # Finding a tenant's newest mirror or erasure receipt without reading every entry.
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS org_audit_by_action_tenant ON audit_chain"
                " (json_extract(CAST(body AS TEXT), '$.action'), json_extract(CAST(body AS TEXT), '$.details.tenant_id'))")

    def record(self, principal: str, action: str, outcome: str = "ok", details: dict[str, Any] | None = None) -> int:
        """Append an entry (ids and counts only in `details`); returns its sequence number."""
        body = chain.canonical_body({"at": time.time(), "actor": principal, "action": action, "outcome": outcome,
                                     "details": details or {}})
        with self._lock, self._db:
            return append(self._db, ORG_CHAIN_ID, body).seq

    def mirror(self, tenant_id: str, checkpoint: chain.Checkpoint) -> int:
        """Keep a copy of a tenant chain's checkpoint in this chain (the tenant's file no longer holds the only one)."""
        return self.record("audit", MIRROR_ACTION, details={
            "tenant_id": tenant_id, "seq": checkpoint.seq, "head_hash": bytes(checkpoint.head_hash).hex(),
            "at": checkpoint.at, "tag": base64.b64encode(bytes(checkpoint.tag)).decode()})

    def mirrored(self, tenant_id: str) -> chain.Checkpoint | None:
        """The newest checkpoint of the tenant's chain mirrored here, or None."""
        found = self.latest(MIRROR_ACTION, tenant_id, order="$.details.seq")
        if found is None:
            return None
        details = found["details"]
        return chain.Checkpoint(int(details["seq"]), bytes.fromhex(details["head_hash"]), float(details["at"]),
                                base64.b64decode(details["tag"]))

    def latest(self, action: str, tenant_id: str, order: str | None = None) -> dict | None:
        """The newest entry of `action` about the tenant (by the JSON path `order`, else by sequence), decoded."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, CAST(body AS TEXT) FROM audit_chain WHERE json_extract(CAST(body AS TEXT), '$.action') = ?"
                " AND json_extract(CAST(body AS TEXT), '$.details.tenant_id') = ?"
                " ORDER BY json_extract(CAST(body AS TEXT), ?) DESC, seq DESC LIMIT 1",
                (action, tenant_id, order or "$.at")).fetchone()
        return {"seq": row[0], **json.loads(row[1])} if row else None

    def pending_checkpoint(self, force: bool = False) -> tuple[chain.ChainEntry | None, float] | None:
        """(head, time) to MAC when a checkpoint is due (or forced and the head is not yet covered)."""
        with self._lock:
            current, last, now = head(self._db), last_checkpoint(self._db), time.time()
        seq = current.seq if current else 0
        if self.policy.due(seq, last, now) or (force and (last is None or seq > last.seq)):
            return current, now
        return None

    def store_checkpoint(self, checkpoint: chain.Checkpoint) -> None:
        with self._lock, self._db:
            store_checkpoint(self._db, checkpoint)

    def events(self, since: int = 0, limit: int = 100) -> list[dict]:
        with self._lock:
            return events(self._db, since, limit)

    def read_chain(self) -> tuple[list[chain.ChainEntry], list[chain.Checkpoint]]:
        """Entries in storage order and checkpoints, from one snapshot (for `chain.verify`)."""
        with self._lock, self._db:
            return read_chain(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def org_audit_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "org_audit.db"
