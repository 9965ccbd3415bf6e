"""Fencing a tenant file's writer (tenancy/fence.py), with two real processes on one file and no Ray.

The old owner is a child process running a TenantShard (the shard actor's logic) that has claimed the file; it is
SIGSTOPped, as a partitioned or frozen node's actor would be, while the new owner (this process) opens the same
file, claims it and writes. When the old owner runs again, its writes are refused (StaleWriter, logged) and the
file holds exactly the new owner's writes. A claim that finds the old owner paused INSIDE a write does not share
the file: WriterBusy. And SQLite's EXCLUSIVE locking mode, as the other candidate fence: its holder, paused, locks
every other process out, readers included, until it dies (docs/placement.md says why that is not the fence here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apsw
import numpy as np
import pytest

from kms import Keyring
from kms.providers.local import LocalKeyProvider
from tenancy.actors import TenantShard, tenant_db_path
from tenancy.fence import StaleWriter, WriterBusy
from tenancy.store import TenantStore

REPO = Path(__file__).resolve().parents[2]
MODEL, DIM = "arcface-r100", 64

# The old owner: a TenantShard (primary) on data_dir's tenant t1; one JSON line out per command line in.
OLD_OWNER = textwrap.dedent(
    """
    import json, logging, sys
    import numpy as np
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from kms import Keyring
    from kms.providers.local import LocalKeyProvider
    from tenancy.actors import TenantShard
    data_dir = sys.argv[1]
    ring = Keyring(LocalKeyProvider(f"{data_dir}/keys/root.key"), f"{data_dir}/keys/keystore.db")
    shard = TenantShard("t1", data_dir, "arcface-r100", 64, lambda v, purpose="embeddings": ring.data_key("t1", purpose, v))
    shard.activate()
    print(json.dumps({"epoch": shard.writer.epoch}), flush=True)
    rng = np.random.default_rng(1)
    for line in sys.stdin:
        command, *args = line.split()
        try:
            if command == "person":
                out = shard.create_person(None, {})
            else:
                out = shard.add_face(args[0], rng.standard_normal(64).astype(np.float32), 0.9, 0.9)
            print(json.dumps({"ok": out}), flush=True)
        except Exception as exc:
            print(json.dumps({"refused": type(exc).__name__, "message": str(exc)}), flush=True)
    """
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    ring = Keyring(LocalKeyProvider(tmp_path / "keys" / "root.key"), tmp_path / "keys" / "keystore.db")
    ring.create_tenant("t1")
    ring.close()
    return tmp_path


def shard_of(data_dir: Path) -> tuple[TenantShard, Keyring]:
    ring = Keyring(LocalKeyProvider(data_dir / "keys" / "root.key"), data_dir / "keys" / "keystore.db")
    return TenantShard("t1", str(data_dir), MODEL, DIM, lambda v, purpose="embeddings": ring.data_key("t1", purpose, v)), ring


class Child:
    def __init__(self, code: str, *args: str, stderr_path: Path) -> None:
        self.stderr = open(stderr_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"child exited ({self.proc.poll()}): see {self.stderr.name}"
        return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self.stderr.close()


def test_a_paused_old_owner_is_refused_once_a_new_owner_claimed_the_file(data_dir: Path, tmp_path: Path) -> None:
    old = Child(OLD_OWNER, str(data_dir), stderr_path=tmp_path / "old.log")
    new, ring = shard_of(data_dir)
    try:
        assert old.read() == {"epoch": 1}
        person = old.ask("person")["ok"]["person_id"]
        first = old.ask(f"face {person}")["ok"]["face_id"]

        os.kill(old.proc.pid, signal.SIGSTOP)  # its node "lost": alive, holding the file open, not running
        started = time.monotonic()
        new.activate()  # what Ray's restart elsewhere does on the first call: reopen, claim, load
        assert new.writer.epoch == 2
        assert time.monotonic() - started < 5  # the paused owner holds no lock between its writes
        second = new.add_face(person, np.random.default_rng(2).standard_normal(DIM).astype(np.float32), 0.9, 0.9)["face_id"]

        os.kill(old.proc.pid, signal.SIGCONT)  # the "partition" heals: the old actor runs the write it had received
        for command in (f"face {person}", "person"):
            refused = old.ask(command)
            assert refused["refused"] == "StaleWriter", refused
            assert "epoch 1" in refused["message"] and "superseded by epoch 2" in refused["message"]
        third = new.add_face(person, np.random.default_rng(3).standard_normal(DIM).astype(np.float32), 0.9, 0.9)["face_id"]

        with TenantStore.open(tenant_db_path(data_dir, "t1"), "t1", MODEL, DIM) as store:
            assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert {f.face_id for f in store.faces_of(person)} == {first, second, third}
            assert store.count_faces() == 3
            actions = [e["action"] for e in store.audit_events(0, 1000)]
        assert actions.count("face.enrol") == 3  # no audit entry of the refused writes either
    finally:
        old.close()
        new.close()
        ring.close()
    log = (tmp_path / "old.log").read_text()
    assert "WRITE REFUSED" in log and "no longer owns the tenant file" in log


LOCKED_OPEN = textwrap.dedent(
    """
    import sys
    from tenancy.store import TenantStore
    from tenancy.audit_log import AuditRecord
    store = TenantStore.open(sys.argv[1], "t1", "arcface-r100", 64)
    store.claim_writer()
    with store.transaction():
        store.record_audit(AuditRecord("test", "write.open"))
        print('{"open": true}', flush=True)
        sys.stdin.readline()
    print('{"committed": true}', flush=True)
    """
)


def test_a_claim_does_not_share_the_file_with_an_owner_paused_inside_a_write(data_dir: Path, tmp_path: Path) -> None:
    path = tenant_db_path(data_dir, "t1")
    TenantStore.open(path, "t1", MODEL, DIM).close()
    old = Child(LOCKED_OPEN, str(path), stderr_path=tmp_path / "old.log")
    try:
        assert old.read() == {"open": True}
        os.kill(old.proc.pid, signal.SIGSTOP)
        with TenantStore.open(path, "t1", MODEL, DIM) as store:
            with pytest.raises(WriterBusy, match="write open in another process"):
                store.claim_writer(wait_s=0.3)
            os.kill(old.proc.pid, signal.SIGCONT)
            assert old.ask("") == {"committed": True}  # it was still the owner: its write stands
            assert store.claim_writer(wait_s=5).epoch == 2
    finally:
        old.close()


EXCLUSIVE_HOLDER = textwrap.dedent(
    """
    import sys, apsw
    conn = apsw.Connection(sys.argv[1])
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first WAL access: wal-index in heap memory
    conn.execute("PRAGMA journal_mode=WAL")
    with conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    print('{"held": true}', flush=True)
    sys.stdin.readline()
    """
)


def test_exclusive_locking_mode_locks_everyone_out_while_its_paused_holder_lives(tmp_path: Path) -> None:
    path = tmp_path / "exclusive.db"
    holder = Child(EXCLUSIVE_HOLDER, str(path), stderr_path=tmp_path / "holder.log")
    try:
        assert holder.read() == {"held": True}
        os.kill(holder.proc.pid, signal.SIGSTOP)
        assert not Path(f"{path}-shm").exists()  # no shared-memory wal-index: nothing host-local to go stale
        reader = apsw.Connection(str(path))
        reader.set_busy_timeout(300)
        with pytest.raises(apsw.BusyError):  # not even a read: a shard activating, the audit reader
            reader.execute("SELECT count(*) FROM t").fetchone()
        holder.proc.kill()  # only the holder's death releases it (on NFS: the server expiring its lease)
        holder.proc.wait(10)
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
        reader.close()
    finally:
        holder.close()
