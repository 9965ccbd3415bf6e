"""The audit hash chain: each kind of tampering is detected, checkpoints MACed by a real (local) key provider."""

from __future__ import annotations

import dataclasses

import pytest

from kms import KeyManager
from tenancy import chain
from tenancy.chain import ChainEntry, Checkpoint, CheckpointPolicy, canonical_body, entry_hash, next_entry

TENANT = "acme"
PURPOSE = "audit-checkpoint"
CHECKPOINT_EVERY = 5
N_ENTRIES = 18  # checkpoints at 0 (the empty chain), 5, 10, 15; entries 16..18 are the unsealed tail


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("chain-keys")
    manager = KeyManager({"provider": "local", "root_key_path": str(base / "root.json")}, str(base / "ks.db"))
    yield manager
    manager.close()


def mac_for(keys, tenant):
    return lambda message: keys.mac(message, PURPOSE, tenant).to_bytes()


def verifier_for(keys, tenant):
    return lambda message, tag: keys.verify_mac(message, tag, PURPOSE, tenant)


@pytest.fixture(scope="module")
def written(keys):
    """A chain of N_ENTRIES audit records as a writer makes them, checkpointed by the policy."""
    policy = CheckpointPolicy(every_entries=CHECKPOINT_EVERY, every_s=3600)
    entries: list[ChainEntry] = []
    checkpoints = [chain.make_checkpoint(TENANT, None, mac_for(keys, TENANT), at=1_000.0)]
    for n in range(1, N_ENTRIES + 1):
        body = canonical_body({"actor": "admin", "action": "person.create", "outcome": "ok", "counts": {"faces": n}})
        entries.append(next_entry(TENANT, entries[-1] if entries else None, body))
        if policy.due(entries[-1].seq, checkpoints[-1] if checkpoints else None, now=1_000.0 + n):
            checkpoints.append(chain.make_checkpoint(TENANT, entries[-1], mac_for(keys, TENANT), at=1_000.0 + n))
    assert [c.seq for c in checkpoints] == [0, 5, 10, 15]
    return entries, checkpoints


def check(keys, entries, checkpoints, tenant=TENANT):
    return chain.verify(tenant, entries, checkpoints, verifier_for(keys, tenant))


def rechain(entries: list[ChainEntry], start: int) -> list[ChainEntry]:
    """What an attacker without the MAC key can do: recompute every link from position `start` on."""
    out = list(entries[:start])
    for entry in entries[start:]:
        out.append(next_entry(TENANT, out[-1] if out else None, entry.body))
    return out


def edited_body(entry: ChainEntry) -> ChainEntry:
    return dataclasses.replace(entry, body=entry.body.replace(b'"ok"', b'"no"'))


def test_intact_chain(keys, written):
    entries, checkpoints = written
    result = check(keys, entries, checkpoints)
    assert result.intact and result.first_bad_seq is None and result.reason is None
    assert (result.entries, result.checkpoints, result.last_checkpoint_seq, result.unsealed_tail) == (18, 4, 15, 3)
    empty = chain.make_checkpoint(TENANT, None, mac_for(keys, TENANT), at=1.0)
    assert check(keys, [], [empty]).intact


def test_edited_entry(keys, written):
    entries, checkpoints = written
    tampered = list(entries)
    tampered[6] = edited_body(entries[6])  # seq 7, hash left as it was
    result = check(keys, tampered, checkpoints)
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.EDITED, 7)

    # Its own hash recomputed too: the next entry no longer links to it.
    fixed = edited_body(entries[6])
    tampered[6] = dataclasses.replace(fixed, entry_hash=entry_hash(TENANT, fixed.prev_hash, 7, fixed.body))
    result = check(keys, tampered, checkpoints)
    assert (result.reason, result.first_bad_seq) == (chain.EDITED, 7)


def test_edited_entry_with_every_later_hash_recomputed(keys, written):
    entries, checkpoints = written
    tampered = list(entries)
    tampered[6] = edited_body(entries[6])
    tampered = rechain(tampered, 6)  # links all consistent again; only the MACed checkpoint at 10 disagrees
    result = check(keys, tampered, checkpoints)
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.REWRITTEN, 6)
    assert result.last_checkpoint_seq == 5


def test_deleted_entry(keys, written):
    entries, checkpoints = written
    result = check(keys, entries[:8] + entries[9:], checkpoints)  # seq 9 gone
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.DELETED, 9)

    # Seq 10 relinked to seq 8 with a fresh hash: the gap in sequence numbers still shows.
    relinked = dataclasses.replace(entries[9], prev_hash=entries[7].entry_hash)
    relinked = dataclasses.replace(relinked, entry_hash=entry_hash(TENANT, relinked.prev_hash, 10, relinked.body))
    result = check(keys, entries[:8] + [relinked] + entries[10:], checkpoints)
    assert (result.reason, result.first_bad_seq) == (chain.DELETED, 9)

    # Renumbered and rechained from there: the checkpoint at 10 names another head.
    result = check(keys, rechain(entries[:8] + entries[9:], 8), checkpoints)
    assert (result.reason, result.first_bad_seq) == (chain.REWRITTEN, 6)


def test_reordered_entries(keys, written):
    entries, checkpoints = written
    swapped = list(entries)
    swapped[11], swapped[12] = entries[12], entries[11]  # seq 13 returned before seq 12
    result = check(keys, swapped, checkpoints)
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.REORDERED, 12)

    # Swapped and renumbered so the sequence numbers read 12, 13: the hashes cover seq and link.
    renumbered = list(entries)
    renumbered[11] = dataclasses.replace(entries[12], seq=12)
    renumbered[12] = dataclasses.replace(entries[11], seq=13)
    result = check(keys, renumbered, checkpoints)
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.EDITED, 12)

    duplicated = entries[:5] + [entries[3]] + entries[5:]
    assert check(keys, duplicated, checkpoints).reason == chain.REORDERED


def test_truncated_after_a_checkpoint(keys, written):
    entries, checkpoints = written
    result = check(keys, entries[:12], checkpoints)  # the checkpoint at 15 outlives entries 13..20
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.TRUNCATED, 13)
    result = check(keys, [], checkpoints)
    assert (result.reason, result.first_bad_seq) == (chain.TRUNCATED, 1)


def test_truncating_the_unsealed_tail_is_the_documented_limit(keys, written):
    """Entries after the newest checkpoint are only hash-linked: cutting them is not detectable here.

    This pins the limit the module docstring states (checkpoint at shutdown, keep the newest elsewhere),
    and shows `unsealed_tail` reports how much is exposed."""
    entries, checkpoints = written
    result = check(keys, entries[:17], checkpoints)
    assert result.intact and result.unsealed_tail == 2
    # ...and deleting the newest checkpoint along with the entries it covers is not caught either.
    assert check(keys, entries[:12], checkpoints[:3]).intact


def test_forged_or_moved_checkpoints(keys, written):
    entries, checkpoints = written
    forged = dataclasses.replace(checkpoints[2], head_hash=bytes(32))
    result = check(keys, entries, [checkpoints[0], checkpoints[1], forged, checkpoints[3]])
    assert (result.intact, result.reason, result.first_bad_seq) == (False, chain.CHECKPOINT_FORGED, 10)
    moved = dataclasses.replace(checkpoints[3], seq=12, head_hash=entries[11].entry_hash)
    assert check(keys, entries, [checkpoints[1], moved]).reason == chain.CHECKPOINT_FORGED
    garbage = dataclasses.replace(checkpoints[1], tag=b"\x00" * 40)
    assert check(keys, entries, [garbage]).reason == chain.CHECKPOINT_FORGED


def test_a_rewritten_chain_cannot_carry_fresh_checkpoints_from_another_tenant(keys, written):
    """An attacker who rebuilds the chain and MACs checkpoints through another tenant's binding is refused."""
    entries, checkpoints = written
    rewritten = rechain([edited_body(e) for e in entries], 0)
    other_tenant_mac = mac_for(keys, "globex")
    replayed = [chain.make_checkpoint(TENANT, rewritten[c.seq - 1] if c.seq else None, other_tenant_mac, at=c.at)
                for c in checkpoints]
    result = check(keys, rewritten, replayed)
    assert (result.intact, result.reason) == (False, chain.CHECKPOINT_FORGED)
    # The same entries under another chain id do not even link.
    assert check(keys, entries, [], tenant="globex").reason == chain.EDITED


def test_provider_outage_is_not_a_verdict(keys, written):
    entries, checkpoints = written

    def unavailable(message, tag):
        raise TimeoutError("KMS unreachable")

    with pytest.raises(TimeoutError):
        chain.verify(TENANT, entries, checkpoints, unavailable)


def test_checkpoint_policy():
    policy = CheckpointPolicy(every_entries=10, every_s=60)
    last = Checkpoint(seq=10, head_hash=bytes(32), at=100.0, tag=b"")
    assert policy.due(0, None, now=0) is False
    assert policy.due(9, None, now=1e9) is False  # no checkpoint yet (writers start with the empty chain's)
    assert policy.due(10, None, now=0) is True
    assert policy.due(10, last, now=1_000) is False  # nothing new since
    assert policy.due(15, last, now=120) is False
    assert policy.due(20, last, now=120) is True
    assert policy.due(11, last, now=161) is True
    assert chain.VerifyResult(True, None, None, "", 0, 0, 0, 0).to_dict()["intact"] is True
