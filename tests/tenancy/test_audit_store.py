"""A tenant's audit chain inside its store file, written by its TenantShard (no Ray here): committed with
each write, MAC-checkpointed by a real KeyManager (local provider), and every kind of tampering with the
file (edit, deletion, reorder, truncation, a forged checkpoint) found by verification (issue 17 §2)."""

from __future__ import annotations

import apsw
import numpy as np
import pytest

from kms import KeyManager
from tenancy.actors import TenantShard, tenant_db_path
from tenancy.chain import CheckpointPolicy
from tenancy.store import NotFound, TenantStore

TENANT = "t-audit"
MODEL, DIM = "audit-test", 16


@pytest.fixture
def keys(tmp_path):
    manager = KeyManager({"provider": "local", "root_key_path": str(tmp_path / "root.key")}, str(tmp_path / "ks.db"))
    manager.create_tenant(TENANT)
    yield manager
    manager.close()


def new_shard(data_dir, keys, every_entries: int = 4) -> TenantShard:
    return TenantShard(TENANT, str(data_dir), MODEL, DIM,
                       data_key=lambda version, purpose="embeddings": keys.data_key(TENANT, purpose, version),
                       audit_mac=lambda message: keys.mac(message, "audit-checkpoint", TENANT).to_bytes(),
                       audit_policy=CheckpointPolicy(every_entries=every_entries, every_s=3600))


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def populate(data_dir, keys) -> dict:
    """Writes through the shard, then closes it (the shutdown checkpoint). Returns what was written."""
    shard = new_shard(data_dir, keys)
    person = shard.create_person("secret-external-id", {"name": "Secret Name"}, principal="key:k1")["person_id"]
    faces = [shard.add_face(person, vector(i), 0.9, 0.8, principal="key:k1")["face_id"] for i in range(3)]
    with pytest.raises(NotFound):
        shard.add_face("f" * 32, vector(9), 0.9, 0.8, principal="key:k1")
    shard.delete_face(person, faces[0], principal="key:k1")
    shard.record_audit("key:k1", "search", "ok", {"faces": 1, "matches": 1})
    shard.close()
    return {"person": person, "faces": faces}


def verify(data_dir, keys) -> dict:
    with TenantStore.open(tenant_db_path(data_dir, TENANT), TENANT, MODEL, DIM) as store:
        return store.verify_audit(lambda message, tag: keys.verify_mac(message, tag, "audit-checkpoint", TENANT)).to_dict()


def tamper(data_dir, *statements) -> None:
    conn = apsw.Connection(str(tenant_db_path(data_dir, TENANT)))
    with conn:
        for sql, params in statements:
            conn.execute(sql, params)
    conn.close()


def test_each_write_is_chained_with_its_audit_entry_and_checkpointed(tmp_path, keys):
    populate(tmp_path, keys)
    with TenantStore.open(tenant_db_path(tmp_path, TENANT), TENANT, MODEL, DIM) as store:
        events = store.audit_events(0, 100)
        assert [(e["action"], e["outcome"], e["actor"]) for e in events] == [
            ("person.create", "ok", "key:k1"), ("face.enrol", "ok", "key:k1"), ("face.enrol", "ok", "key:k1"),
            ("face.enrol", "ok", "key:k1"), ("face.enrol", "NotFound", "key:k1"), ("face.delete", "ok", "key:k1"),
            ("search", "ok", "key:k1")]
        assert [e["seq"] for e in events] == list(range(1, 8))
        assert events[1]["counts"] == {"faces": 1}
        assert store.audit_events(5, 100) == events[5:]
        raw = b"".join(bytes(body) for (body,) in store._conn.execute("SELECT body FROM audit_chain"))
    assert b"secret-external-id" not in raw and b"Secret Name" not in raw  # ids, counts, outcomes only
    result = verify(tmp_path, keys)
    # checkpoints: the empty chain at creation, seq 4 (every 4 entries), and the head (7) at shutdown
    assert result["intact"] and result["entries"] == 7 and result["checkpoints"] == 3, result
    assert result["last_checkpoint_seq"] == 7 and result["unsealed_tail"] == 0


def test_a_checkpoint_is_the_providers_mac_for_this_tenant(tmp_path, keys):
    populate(tmp_path, keys)
    keys.create_tenant("t-other")
    with TenantStore.open(tenant_db_path(tmp_path, TENANT), TENANT, MODEL, DIM) as store:
        result = store.verify_audit(lambda message, tag: keys.verify_mac(message, tag, "audit-checkpoint", "t-other"))
    assert not result.intact and result.reason == "checkpoint_forged"


CHAIN = "SELECT id, seq, body, prev_hash, entry_hash FROM audit_chain WHERE seq = ?"


def _row(data_dir, seq):
    conn = apsw.Connection(str(tenant_db_path(data_dir, TENANT)))
    row = conn.execute(CHAIN, (seq,)).fetchone()
    conn.close()
    return row


@pytest.mark.parametrize("kind, reason, first_bad", [
    ("edit", "edited", 3),
    ("delete", "deleted", 3),
    ("reorder", "reordered", 3),
    ("truncate", "truncated", 6),
    ("rehash", "rewritten", 1),
])
def test_tampering_with_the_tenant_file_is_detected(tmp_path, keys, kind, reason, first_bad):
    populate(tmp_path, keys)
    assert verify(tmp_path, keys)["intact"]
    if kind == "edit":  # the refused enrolment (seq 5) would not do: change an ok entry's outcome
        _, seq, body, *_ = _row(tmp_path, 3)
        tamper(tmp_path, ("UPDATE audit_chain SET body = ? WHERE seq = 3", (bytes(body).replace(b'"ok"', b'"no"'),)))
    elif kind == "delete":
        tamper(tmp_path, ("DELETE FROM audit_chain WHERE seq = 3", ()))
    elif kind == "reorder":  # entries 3 and 4 stored the other way round, each row intact
        r3, r4 = _row(tmp_path, 3), _row(tmp_path, 4)
        insert = "INSERT INTO audit_chain (seq, body, prev_hash, entry_hash) VALUES (?, ?, ?, ?)"
        tamper(tmp_path, ("DELETE FROM audit_chain WHERE seq IN (3, 4)", ()), (insert, r4[1:]), (insert, r3[1:]))
    elif kind == "truncate":  # the last two entries cut; the shutdown checkpoint still names seq 7
        tamper(tmp_path, ("DELETE FROM audit_chain WHERE seq > 5", ()))
    else:  # entry 2 edited and every later hash recomputed: consistent links, but not what was checkpointed
        from tenancy import chain

        conn = apsw.Connection(str(tenant_db_path(tmp_path, TENANT)))
        rows = conn.execute("SELECT seq, body FROM audit_chain ORDER BY seq").fetchall()
        with conn:
            prev = chain.GENESIS_HASH
            for seq, body in rows:
                body = bytes(body).replace(b'"face.enrol"', b'"face.noop"') if seq == 2 else bytes(body)
                digest = chain.entry_hash(f"tenant:{TENANT}", prev, seq, body)
                conn.execute("UPDATE audit_chain SET body = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?", (body, prev, digest, seq))
                prev = digest
        conn.close()
    result = verify(tmp_path, keys)
    assert not result["intact"], result
    assert (result["reason"], result["first_bad_seq"]) == (reason, first_bad), result


def test_a_refused_write_commits_no_face_and_an_error_entry(tmp_path, keys):
    shard = new_shard(tmp_path, keys)
    with pytest.raises(NotFound):
        shard.delete_person("0" * 32, principal="key:k2")
    assert shard.store.count_faces() == 0
    assert [(e["action"], e["outcome"]) for e in shard.store.audit_events()] == [("person.delete", "NotFound")]
    shard.close()
