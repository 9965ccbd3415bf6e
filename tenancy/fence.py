"""Fencing a tenant file's writer: an owner epoch in the file itself, checked by SQLite inside every write.

A tenant's primary shard actor is the one writer of its file (tenancy/actors/). When its node is declared lost,
Ray restarts it elsewhere and the new actor reopens the file. If the old node was in fact alive (partitioned, or
its process paused), the old actor may still hold the file open and run a write it had already received. So each
owner CLAIMS the file when it opens it: the `writer_fence` row's epoch goes up by one in a write transaction, and
the owner's connection gets TEMP triggers (they exist on that connection only) on every table of the file that
refuse any INSERT, UPDATE or DELETE unless the file's epoch is still the owner's. A refused write raises
`StaleWriter`, logged as an error, and its transaction rolls back: nothing of it reaches the file.

Why in the file and not in the registry or the key service: the check must be part of the write. SQLite runs
trigger and write in one transaction under its write lock, and a claim needs that lock too, so no pause of the
old owner (SIGSTOP, a long GC, a frozen VM) between a check and its write can let a stale write through; a check
against another service followed by the write always leaves that window. The claim waits for a write the old
owner has open (busy timeout), and fails with `WriterBusy` if it does not end: the new owner then does not share
the file, it refuses to start (HTTP 503, retried by the caller).

The fence is exactly as strong as the file's locking. On one host that is absolute. Across hosts it needs the
shared filesystem's POSIX locks (NFS v4 with locking, EFS, CephFS) AND coherent pages, which SQLite's WAL index
(the -shm file, memory shared between the processes of one host) does not give between two hosts: the premise of
configs/cluster.yaml stays "never two hosts on one file at once", and the fence is what refuses the stale writer
when that premise is broken on one host, or across hosts as far as the filesystem keeps locks coherent. SQLite's
EXCLUSIVE locking mode, and what NFS v4 lease expiry means for failover: docs/placement.md.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import apsw

from securegate import errors
from tenancy.sqlite import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

TABLE = "writer_fence"
_REFUSE = "sg_fence_refused"


class StaleWriter(RuntimeError):
    """This process claimed the tenant file earlier and a newer owner has claimed it since: the write is refused.
    Seen by a caller of a shard actor that outlived its node's loss (the client retries and reaches the new one)."""

    api_error = errors.ServiceUnavailable


class WriterBusy(RuntimeError):
    """A claim found a write of the file's previous owner still open after the busy timeout: the file is not shared,
    this owner does not start (the caller retries)."""

    api_error = errors.ServiceUnavailable


@dataclass(frozen=True)
class Claim:
    tenant_id: str
    epoch: int
    owner: str


def owner_name() -> str:
    """Who claims: host and process (no personal data; shown in the refusal and in logs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(conn: apsw.Connection, tenant_id: str, owner: str | None = None, wait_s: float | None = None) -> Claim:
    """Make this connection the file's writer: a new epoch in the file, and the triggers that refuse this
    connection's writes once another claim supersedes it. `wait_s`: how long to wait for a write the previous owner
    has open (default: the connection's busy timeout)."""
    owner = owner or owner_name()
    if wait_s is not None:
        conn.set_busy_timeout(int(wait_s * 1000))
    try:
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: a claim never reads an epoch it cannot then write
    except apsw.BusyError as exc:
        raise WriterBusy(f"tenant {tenant_id}: its file has a write open in another process (a previous shard actor "
                         "that may still be alive); not sharing it, retry") from exc
    finally:
        if wait_s is not None:
            conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    try:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
                     "epoch INTEGER NOT NULL, owner TEXT NOT NULL)")
        row = conn.execute(f"SELECT epoch FROM {TABLE} WHERE id = 1").fetchone()
        epoch = (row[0] if row else 0) + 1
        conn.execute(f"INSERT INTO {TABLE} (id, epoch, owner) VALUES (1, ?, ?) "
                     "ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, owner = excluded.owner", (epoch, owner))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _arm(conn, Claim(tenant_id, epoch, owner))
    log.info("tenant %s: file claimed by %s (writer epoch %d)", tenant_id, owner, epoch)
    return Claim(tenant_id, epoch, owner)


def _arm(conn: apsw.Connection, mine: Claim) -> None:
    """TEMP triggers on every table of the file: a write while the file's epoch is not `mine.epoch` is refused."""

    def refused(epoch: int | None, owner: str | None) -> None:
        log.error("tenant %s: WRITE REFUSED: this process (%s, writer epoch %d) no longer owns the tenant file; "
                  "%s claimed it at epoch %s (this actor's node was declared lost and a new actor took over)",
                  mine.tenant_id, mine.owner, mine.epoch, owner, epoch)
        raise StaleWriter(f"tenant {mine.tenant_id}: this shard actor (writer epoch {mine.epoch}) was superseded by "
                          f"epoch {epoch}; write refused, retry")

    conn.create_scalar_function(_REFUSE, refused, 2)
    current = f"(SELECT epoch FROM main.{TABLE} WHERE id = 1)"
    tables = [name for (name,) in conn.execute(
        "SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != ?", (TABLE,))]
    with conn:
        for name in tables:
            for op in ("INSERT", "UPDATE", "DELETE"):
                trigger = f"sg_fence_{name}_{op.lower()}"
                conn.execute(f'DROP TRIGGER IF EXISTS temp."{trigger}"')
                conn.execute(f'CREATE TEMP TRIGGER "{trigger}" BEFORE {op} ON main."{name}" '
                             f"WHEN {current} IS NOT {int(mine.epoch)} "
                             f"BEGIN SELECT {_REFUSE}({current}, (SELECT owner FROM main.{TABLE} WHERE id = 1)); END")
