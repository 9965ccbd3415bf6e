"""Hash-chained audit entries with MACed checkpoints: edited, deleted, reordered and truncated entries show.

Entry n (seq 1, 2, ... without gaps) stores `prev_hash` (entry n-1's hash; 32 zero bytes for entry 1) and

    entry_hash = SHA-256(domain | len(chain_id) | chain_id | prev_hash | seq (u64 BE) | body)

where `body` is the entry's bytes *as stored* (sealed, if the audit encrypts its details), so `verify` needs
no data key. Every so often, and at shutdown, the head is checkpointed: {seq, head_hash, at, tag}, the tag a
MAC from the key provider (KMS / HSM / local key, via `kms.KeyManager.mac`) over `checkpoint_message`.

What this proves, and what it cannot:
- Editing, deleting or reordering an entry breaks the hash links, unless the attacker recomputes every hash
  after it; that rewrite then disagrees with the next checkpoint's head, and a checkpoint cannot be forged
  without the provider's MAC key (which never leaves KMS/the HSM).
- Truncation is seen up to the newest checkpoint that survives: a checkpoint beyond the last entry says
  entries were cut. Entries after the newest checkpoint (`unsealed_tail`) are only hash-linked: they can
  be cut or rewritten without trace, and whoever deletes the newest checkpoints as well as the entries
  they cover is not caught by the file alone. So a copy of the newest checkpoint is kept outside the file
  and handed to `verify` with the others (tenancy/audit_log.py): a tenant chain's in the org audit (mirrored),
  the org chain's in the key store (kms/anchors.py).

The storage (SQLite, in the audit module) is the caller's: this module is pure functions and dataclasses.
A writer reads its previous entry inside the transaction that inserts the next one (`next_entry`), so a
rolled-back write never leaves an in-memory head ahead of the file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

GENESIS_HASH = bytes(32)
_ENTRY_DOMAIN = b"securegate/chain-entry/v1\x00"
_CHECKPOINT_DOMAIN = b"securegate/chain-checkpoint/v1\x00"

# Stable `VerifyResult.reason` codes.
EDITED = "edited"                        # an entry's bytes or its link to the previous one changed
DELETED = "deleted"                      # a sequence number is missing
REORDERED = "reordered"                  # entries come out of sequence order (or one repeats)
TRUNCATED = "truncated"                  # a valid checkpoint names entries that are gone
REWRITTEN = "rewritten"                  # links are consistent but disagree with a valid checkpoint
CHECKPOINT_FORGED = "checkpoint_forged"  # a checkpoint's tag does not verify


@dataclass(frozen=True, slots=True)
class ChainEntry:
    seq: int
    body: bytes
    prev_hash: bytes
    entry_hash: bytes


_CHECKPOINT_RECORD = struct.Struct(">Q32sd")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int          # the head's sequence number (0: the empty chain)
    head_hash: bytes  # entry `seq`'s hash (GENESIS_HASH for seq 0)
    at: float         # unix time it was made, MACed with the rest
    tag: bytes        # the provider's MAC over checkpoint_message(...), e.g. kms.MacTag.to_bytes()

    def to_bytes(self) -> bytes:
        """seq (u64 BE) | head_hash (32) | at (f64 BE) | tag: the checkpoint as one blob (a head anchor's record)."""
        return _CHECKPOINT_RECORD.pack(self.seq, bytes(self.head_hash), self.at) + bytes(self.tag)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Checkpoint:
        if len(blob) <= _CHECKPOINT_RECORD.size:
            raise ValueError("not a checkpoint record")
        seq, head_hash, at = _CHECKPOINT_RECORD.unpack_from(blob)
        return cls(seq, head_hash, at, bytes(blob[_CHECKPOINT_RECORD.size:]))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    intact: bool
    first_bad_seq: int | None  # earliest entry that may have been tampered with (None when intact)
    reason: str | None         # one of the codes above
    detail: str
    entries: int               # entries read
    checkpoints: int           # checkpoints whose tag verified
    last_checkpoint_seq: int   # newest valid checkpoint (0 when none)
    unsealed_tail: int         # entries after it: hash-linked only, not yet covered by a MAC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_body(record: Mapping[str, Any]) -> bytes:
    """One byte encoding per record (sorted keys, compact, UTF-8, standard JSON): what gets hashed."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _chain_id_bytes(chain_id: str) -> bytes:
    encoded = chain_id.encode("utf-8")
    return struct.pack(">I", len(encoded)) + encoded  # length-prefixed: no two chain ids run together


def entry_hash(chain_id: str, prev_hash: bytes, seq: int, body: bytes) -> bytes:
    return hashlib.sha256(
        _ENTRY_DOMAIN + _chain_id_bytes(chain_id) + bytes(prev_hash) + struct.pack(">Q", seq) + bytes(body)
    ).digest()


def next_entry(chain_id: str, previous: ChainEntry | None, body: bytes) -> ChainEntry:
    """The entry after `previous` (None: the first entry of the chain)."""
    seq, prev_hash = (previous.seq + 1, previous.entry_hash) if previous else (1, GENESIS_HASH)
    return ChainEntry(seq, bytes(body), prev_hash, entry_hash(chain_id, prev_hash, seq, body))


def checkpoint_message(chain_id: str, seq: int, head_hash: bytes, at: float) -> bytes:
    return _CHECKPOINT_DOMAIN + _chain_id_bytes(chain_id) + struct.pack(">Q", seq) + bytes(head_hash) + struct.pack(">d", at)


def make_checkpoint(chain_id: str, head: ChainEntry | None, mac: Callable[[bytes], bytes], at: float) -> Checkpoint:
    """Checkpoint the head (None: the empty chain); `mac` is the provider MAC bound to this chain's tenant."""
    seq, head_hash = (head.seq, head.entry_hash) if head else (0, GENESIS_HASH)
    return Checkpoint(seq, head_hash, at, mac(checkpoint_message(chain_id, seq, head_hash, at)))


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When a writer checkpoints: after `every_entries` new entries or `every_s` seconds with new entries.

    A writer also checkpoints the empty chain when it creates it (so cutting every entry shows) and the
    head at shutdown."""

    every_entries: int = 100
    every_s: float = 300.0

    def due(self, head_seq: int, last: Checkpoint | None, now: float) -> bool:
        last_seq = last.seq if last else 0
        if head_seq <= last_seq:
            return False  # nothing new to cover
        return head_seq - last_seq >= self.every_entries or (last is not None and now - last.at >= self.every_s)


def verify(
    chain_id: str,
    entries: Iterable[ChainEntry],
    checkpoints: Iterable[Checkpoint],
    verify_tag: Callable[[bytes, bytes], bool],
) -> VerifyResult:
    """Check `entries` (in the order the store returns them) against themselves and the checkpoints.

    `verify_tag(message, tag)` is the provider's verification bound to this chain's tenant; an exception
    from it (provider outage) propagates: "could not check" is not "tampered". Reports the earliest problem.
    """
    entries = list(entries)
    present = {entry.seq for entry in entries}
    hashes: dict[int, bytes] = {0: GENESIS_HASH}
    problems: list[tuple[int, str, str]] = []
    prev_hash, expected = GENESIS_HASH, 1
    for entry in entries:
        problem = _entry_problem(chain_id, entry, expected, prev_hash, present)
        if problem:
            problems.append(problem)
            break
        hashes[entry.seq] = entry.entry_hash
        prev_hash, expected = entry.entry_hash, expected + 1
    linked_to = expected - 1  # entries 1..linked_to are consistently linked
    chain_broken = bool(problems)

    valid = 0
    last_good = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        message = checkpoint_message(chain_id, checkpoint.seq, checkpoint.head_hash, checkpoint.at)
        if not verify_tag(message, checkpoint.tag):
            problems.append((checkpoint.seq, CHECKPOINT_FORGED, f"checkpoint at seq {checkpoint.seq} fails its MAC"))
            continue
        valid += 1
        if checkpoint.seq > linked_to:
            if not chain_broken:
                problems.append((linked_to + 1, TRUNCATED,
                                 f"a checkpoint covers seq {checkpoint.seq} but the chain ends at {linked_to}"))
            continue
        if hashes[checkpoint.seq] != checkpoint.head_hash:
            problems.append((last_good + 1, REWRITTEN,
                             f"entries {last_good + 1}..{checkpoint.seq} disagree with the checkpoint at {checkpoint.seq}"))
            continue
        last_good = max(last_good, checkpoint.seq)

    if problems:
        seq, reason, detail = min(problems, key=lambda p: p[0])
        return VerifyResult(False, seq, reason, detail, len(entries), valid, last_good, max(0, linked_to - last_good))
    return VerifyResult(True, None, None, f"{linked_to} entries linked; {valid} checkpoints verified",
                        len(entries), valid, last_good, linked_to - last_good)


def _entry_problem(chain_id: str, entry: ChainEntry, expected: int, prev_hash: bytes,
                   present: set[int]) -> tuple[int, str, str] | None:
    if entry.seq != expected:
        if entry.seq < expected:
            return expected, REORDERED, f"seq {entry.seq} comes again after seq {expected - 1}"
        if expected in present:
            return expected, REORDERED, f"seq {entry.seq} comes before seq {expected}"
        return expected, DELETED, f"seq {expected} is missing (next is {entry.seq})"
    if entry_hash(chain_id, entry.prev_hash, entry.seq, entry.body) != entry.entry_hash:
        return entry.seq, EDITED, f"entry {entry.seq} does not match its hash"
    if entry.prev_hash != prev_hash:
        # Either entry seq-1 was rewritten with a fresh hash or this entry's link was: the earlier one is suspect.
        return entry.seq - 1 if entry.seq > 1 else 1, EDITED, f"entry {entry.seq} does not link to entry {entry.seq - 1}"
    return None
