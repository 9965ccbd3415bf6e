"""Power loss during enrolment, deletion, retention and key rotation of a real TenantStore.

The store runs through `tests.powerloss.PowerLossVFS` (registered as apsw's default VFS, so `TenantStore.open`
needs no hook): writes sit in a simulated page cache until the file's xSync, and at the crash point every
unsynced write is dropped. The workload is cut at EVERY sync of a run, and after every acknowledged operation
(power lost between calls). After each crash the file is reopened without the VFS, as after a reboot, and:

- `PRAGMA integrity_check` is ok and `foreign_key_check` finds nothing;
- the store opens and every face decrypts under its recorded key version (no record half re-encrypted);
- what a reader finds is exactly the state after the acknowledged operations, or that state plus the one
  operation in flight when the power went (never part of it: no half-applied enrolment or deletion);
- that state includes the tenant's audit chain (tenancy/audit_log.py), written in the same transaction as each
  write: after any crash a face (or a deletion, a re-encryption batch) is there if and only if its audit
  entry is, and the chain's hash links verify.

Self-check: `test_power_loss_detects_synchronous_off_and_normal` runs the same crash points with
`synchronous=OFF` and `synchronous=NORMAL` (commits not fsynced in WAL mode: they survive kill -9, not a
power cut) and asserts that at least one crash point LOSES AN ACKNOWLEDGED WRITE. So this test FAILS with
synchronous=OFF: it cannot pass for the wrong reason, e.g. a VFS that never really dropped anything.

The vectors are random unit vectors: the store treats embeddings as opaque bytes, and exact byte equality
after decryption is what is checked.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import numpy as np
import pytest

from kms import DataKey
from kms.records import RecordCipher
from tenancy.personal import PersonKeys
from tenancy.audit_log import AuditRecord
from tenancy.store import TenantStore
from tests.powerloss import (
    CrashPoint,
    Ledger,
    PowerLossVFS,
    close_after_crash,
    crash_points,
    power_loss_expected,
    run_until_power_loss,
)

DIM = 32
MODEL = "powerloss-test"
TENANT = "t-powerloss"
CIPHERS = {1: RecordCipher(os.urandom(32), 1), 2: RecordCipher(os.urandom(32), 2)}
DATA_KEYS = {(purpose, version): os.urandom(32) for purpose in ("persons", "blind-index") for version in (1, 2)}


def person_keys(current: int) -> PersonKeys:
    """The persons' field and blind-index keys, `current` being the content-key version new writes use."""
    return PersonKeys(lambda version, purpose: DataKey(TENANT, purpose, version or current, DATA_KEYS[(purpose, version or current)]))
ROTATION_BATCH = 2
PRINCIPAL = "key:powerloss"


@dataclass
class Expected:
    """What a reader must find: persons by external id, faces by their vector bytes, key versions."""

    persons: dict[str, dict] = field(default_factory=dict)
    faces: dict[bytes, str] = field(default_factory=dict)  # vector bytes -> external id of its person
    rotated: int = 0  # faces moved from key v1 to v2 by committed re-encryption batches
    enrolled_under_v2: set[bytes] = field(default_factory=set)
    audit: list[str] = field(default_factory=list)  # the audit chain's actions: committed with each write, or not at all

    def v2_faces(self) -> int:
        return self.rotated + len(self.enrolled_under_v2 & self.faces.keys())

    def summary(self) -> tuple:
        return self.persons, self.faces, self.v2_faces(), tuple(self.audit)


class Workload:
    """Enrol, delete a person, expire faces (retention), rotate the content key, enrol again.

    Each store call is one operation of `ledger`, which knows what must be found if the power goes.
    """

    def __init__(self, path: Path, ledger: Ledger[Expected], synchronous: str) -> None:
        self.path = path
        self.ledger = ledger
        self._op = ledger.op
        self.synchronous = synchronous
        self.store: TenantStore | None = None
        self.rng = np.random.default_rng(17)

    def _vectors(self, n: int) -> list[np.ndarray]:
        vectors = self.rng.standard_normal((n, DIM)).astype("<f4")
        return list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))

    def _enrol(self, external_id: str, version: int) -> str:
        metadata = {"name": external_id.upper(), "n": len(external_id)}

        def create(e: Expected) -> None:
            e.persons[external_id] = metadata
            e.audit.append("person.create")

        person = self._op(create, lambda: self.store.create_person(external_id, metadata, keys=person_keys(version),
                                                                  audit=AuditRecord(PRINCIPAL, "person.create")))
        vectors = self._vectors(2)

        def add(e: Expected) -> None:
            e.audit.append("face.enrol")
            for v in vectors:
                e.faces[v.tobytes()] = external_id
                if version == 2:
                    e.enrolled_under_v2.add(v.tobytes())

        self._op(add, lambda: self.store.add_faces(person.person_id, vectors, CIPHERS[version], [0.9, 0.8], [0.7, 0.6],
                                                  audit=AuditRecord(PRINCIPAL, "face.enrol")))
        return person.person_id

    def run(self) -> None:
        self.store = self._op(lambda e: None, lambda: TenantStore.open(self.path, TENANT, MODEL, DIM))
        if self.synchronous != "FULL":
            # Only the self-check weakens durability; TenantStore deliberately offers no knob for it.
            self.store._conn.execute(f"PRAGMA synchronous={self.synchronous}")
        ids = {ext: self._enrol(ext, 1) for ext in ("ext-0", "ext-1")}
        cutoff = time.time()  # retention: faces enrolled before this expire
        ids |= {ext: self._enrol(ext, 1) for ext in ("ext-2", "ext-3")}

        def delete_person(e: Expected) -> None:
            e.audit.append("person.delete")
            del e.persons["ext-0"]
            e.faces = {v: ext for v, ext in e.faces.items() if ext != "ext-0"}

        self._op(delete_person, lambda: self.store.delete_person(ids["ext-0"], audit=AuditRecord(PRINCIPAL, "person.delete")))

        def expire(e: Expected) -> None:
            e.audit.append("face.expire")
            e.faces = {v: ext for v, ext in e.faces.items() if ext != "ext-1"}

        self._op(expire, lambda: self.store.delete_faces([f.face_id for f in self.store.faces_created_before(cutoff)],
                                                             audit=AuditRecord("retention", "face.expire")))

        # The persons' fields and blind-index tags are re-sealed first (what a reader finds does not change).
        person_rotation = self.store.reencrypt_persons(person_keys(2), batch_size=ROTATION_BATCH)
        while self._op(lambda e: None, lambda: next(person_rotation, None)) is not None:
            pass
        rotation = self.store.reencrypt(CIPHERS.__getitem__, CIPHERS[2], batch_size=ROTATION_BATCH,
                                       audit=AuditRecord("rotation", "key.reencrypt"))
        to_rotate = 4  # ext-2 and ext-3's faces

        def batch(e: Expected) -> None:
            if e.rotated < to_rotate:  # the last call finds nothing to re-seal: no batch, no audit entry
                e.rotated = min(to_rotate, e.rotated + ROTATION_BATCH)
                e.audit.append("key.reencrypt")

        while self._op(batch, lambda: next(rotation, None)) is not None:
            pass
        self._enrol("ext-4", 2)
        self.store.close()
        self.store = None


def observe(path: Path) -> tuple:
    """Reopen without the VFS (after the reboot) and read back everything, decrypting every face."""
    raw = apsw.Connection(str(path))
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        raw.close()
    with TenantStore.open(path, TENANT, MODEL, DIM) as store:
        persons, _ = store.list_persons(limit=100, keys=person_keys(2))  # raises CorruptPerson if half re-sealed
        external = {p.person_id: p.external_id for p in persons}
        loaded = store.load_all(CIPHERS.__getitem__)  # raises CorruptRecord on a half-applied record
        faces = {bytes(vector.tobytes()): external[pid] for vector, pid in zip(loaded.vectors, loaded.person_ids)}
        v2 = store.key_versions_in_use().get(2, 0)
        assert len(faces) == store.count_faces()
        audit = tuple(e["action"] for e in store.audit_events(0, 1000))
        chain = store.verify_audit(lambda message, tag: False)  # no checkpoints here: the hash links only
        assert chain.intact, chain
    return {p.external_id: p.metadata for p in persons}, faces, v2, audit


def crash_run(base: Path, synchronous: str, point: CrashPoint = CrashPoint()) -> tuple[Ledger, PowerLossVFS, list[str]]:
    """One run cut at `point`; returns the problems found after the reboot (empty: all good)."""
    path = base / synchronous / point.label / "embeddings.db"
    # The default VFS, so TenantStore.open's plain apsw.Connection(path) goes through it: no hook needed.
    vfs = PowerLossVFS("powerloss", crash_at_sync=point.at_sync, make_default=True)
    ledger = Ledger(Expected(), vfs, crash_after_ack=point.after_ack)
    run_until_power_loss(vfs, Workload(path, ledger, synchronous).run, [path])
    if point != CrashPoint() and not vfs.crashed:
        raise AssertionError(f"crash point {point.label} was never reached")
    label = point.label
    try:
        observed = observe(path)
    except (AssertionError, Exception) as exc:  # noqa: BLE001 - a corrupt file is a finding, reported below
        return ledger, vfs, [f"{label}: store unusable after the crash: {type(exc).__name__}: {exc}"]
    if observed in [state.summary() for state in ledger.allowed()]:
        return ledger, vfs, []
    persons, faces, v2, audit = observed
    acked_persons, acked_faces, acked_v2, acked_audit = ledger.acked.summary()
    in_flight_persons, in_flight_faces, _, _ = ledger.in_flight.summary() if ledger.in_flight else ({}, {}, 0, ())
    lost = bool(
        acked_persons.keys() - persons.keys() or acked_faces.keys() - faces.keys()  # acknowledged writes gone
        or persons.keys() - acked_persons.keys() - in_flight_persons.keys()  # acknowledged deletions undone
        or faces.keys() - acked_faces.keys() - in_flight_faces.keys()
        or v2 < acked_v2  # acknowledged re-encryption batches undone
        or audit[:len(acked_audit)] != acked_audit  # acknowledged audit entries gone
    )
    kind = "LOST ACKNOWLEDGED WRITES" if lost else "half-applied or unexpected state"
    return ledger, vfs, [
        f"{label}: {kind}: persons {sorted(persons)} (acked {sorted(acked_persons)}), faces {len(faces)} "
        f"(acked {len(acked_faces)}), v2 faces {v2} (acked {acked_v2}), audit {list(audit)} (acked {list(acked_audit)}) after {ledger.acks} acknowledged operations"
    ]


def all_crash_points(base: Path, synchronous: str) -> tuple[list[str], int, int]:
    clean, vfs, problems = crash_run(base, synchronous)
    assert problems == [], problems  # without a crash the checker accepts the final state
    syncs, acks = len(vfs.syncs), clean.acks
    for point in crash_points(syncs, acks):
        problems += crash_run(base, synchronous, point)[2]
    return problems, syncs, acks


def test_power_loss_at_every_sync_loses_nothing_acknowledged(tmp_path):
    start = time.perf_counter()
    problems, syncs, acks = all_crash_points(tmp_path, "FULL")
    assert syncs >= 20 and acks >= 15  # the run really syncs: each commit, each checkpoint
    assert problems == [], "\n".join(problems)
    print(f"power loss: {syncs} sync crash points + {acks} between-operation crash points, all consistent, "
          f"{time.perf_counter() - start:.1f}s")


@pytest.mark.parametrize("synchronous", ["OFF", "NORMAL"])
def test_power_loss_detects_synchronous_off_and_normal(tmp_path, synchronous):
    """The same crash points with commits not fsynced: an acknowledged write must be lost somewhere.

    If this ever passes with no loss, the harness is not dropping unsynced writes and the FULL test above
    proves nothing."""
    problems, _, _ = all_crash_points(tmp_path, synchronous)
    assert any("LOST ACKNOWLEDGED WRITES" in p for p in problems), problems


# -- the harness itself, on a plain apsw database ---------------------------------------------------------


def _plain(path: Path, synchronous: str, vfs_name: str) -> apsw.Connection:
    conn = apsw.Connection(str(path), vfs=vfs_name)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x BLOB)")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except apsw.Error:
        close_after_crash(conn)  # the crash hit the setup: close now, not at garbage collection
        raise
    return conn


@pytest.mark.parametrize(("synchronous", "survives"), [("FULL", True), ("OFF", False)])
def test_harness_keeps_synced_and_drops_unsynced_writes(tmp_path, synchronous, survives):
    path = tmp_path / "plain.db"
    vfs = PowerLossVFS("powerloss-plain")
    with power_loss_expected():
        conn = _plain(path, synchronous, vfs.name)
        syncs_before = len(vfs.syncs)
        conn.execute("INSERT INTO t VALUES (?)", (b"acknowledged" * 1000,))
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # reads see the page cache
        assert (len(vfs.syncs) > syncs_before) is survives
        vfs.crash()
        with pytest.raises(apsw.IOError):
            conn.execute("INSERT INTO t VALUES (1)")
        close_after_crash(conn)
        vfs.unregister()
    reopened = apsw.Connection(str(path))
    assert reopened.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert reopened.execute("SELECT count(*) FROM t").fetchone()[0] == (1 if survives else 0)
    reopened.close()


def test_harness_crashes_at_the_chosen_sync(tmp_path):
    """A crash at sync N: syncs before N are on disk, sync N and everything after it are not."""
    probe = PowerLossVFS("powerloss-probe")
    try:
        conn = _plain(tmp_path / "probe.db", "FULL", probe.name)
        for n in range(3):
            conn.execute("INSERT INTO t VALUES (?)", (n,))
        conn.close()
    finally:
        probe.unregister()
    total = len(probe.syncs)
    for crash_at in range(1, total + 1):
        path = tmp_path / f"c{crash_at}.db"
        vfs = PowerLossVFS("powerloss-probe", crash_at_sync=crash_at)
        committed = 0
        conn = None
        with power_loss_expected():
            try:
                conn = _plain(path, "FULL", vfs.name)
                for n in range(3):
                    conn.execute("INSERT INTO t VALUES (?)", (n,))
                    committed += 1
                conn.close()  # the last syncs are the checkpoint at close
            except apsw.Error:
                assert vfs.crashed and len(vfs.syncs) == crash_at - 1
                if conn is not None:
                    close_after_crash(conn)
            finally:
                vfs.unregister()
        reopened = apsw.Connection(str(path))
        assert reopened.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        try:
            rows = reopened.execute("SELECT count(*) FROM t").fetchone()[0]
        except apsw.SQLError:  # crashed before the table's creation was durable
            rows = 0
        assert rows in (committed, committed + 1), (crash_at, rows, committed)
        reopened.close()
