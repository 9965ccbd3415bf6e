"""Writes tests/streams/data/events-356442b.sql: the SQL of an events.db written by the StreamStore of 356442b
(loaded from `git show`), kept as text; tests/streams/test_event_log.py rebuilds the file from it.

The file is what `streams/store.py` of main at 356442b writes (before the events' blind index): a tenant
`tenant-legacy` with a stream, events of two persons and an unknown (one promoted and relinked), an unknown's
vectors, a webhook and its deliveries. Every sealed value is under a fixed test key, version 1
(`LEGACY_KEY` in tests/streams/test_event_log.py); the values are synthetic.

    .venv/bin/python tests/streams/make_events_db.py tests/streams/data/events-356442b.sql
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.revisions import module_at  # noqa: E402
from kms.records import RecordCipher  # noqa: E402

StreamStore = module_at("356442b", "streams/store.py", "store_356442b").StreamStore

LEGACY_KEY = bytes(range(32))
TENANT = "tenant-legacy"
DAY = 1_700_000_000.0 - 1_700_000_000.0 % 86400  # 2023-11-14 00:00 UTC


def main(path: Path) -> None:
    cipher = RecordCipher(LEGACY_KEY, 1)
    cipher_for = {1: cipher}.__getitem__
    store = StreamStore(path, TENANT)
    store.put_stream(cipher, "cam_00000000000000a1", "front door", "rtsp://user:pw@camera/1", {"fps": 5.0}, DAY)
    anna, ben = "a" * 32, "b" * 32
    seqs = []
    for hour, (person, external) in enumerate([(anna, "anna"), (ben, "ben"), (anna, "anna"), (ben, None)]):
        start = DAY + 8 * 3600 + hour * 1800
        event = store.add_event(cipher, "person_seen", "cam_00000000000000a1", start, start + 30,
                                {"person_id": person, "external_id": external, "tracks": 1})
        seqs.append(event["seq"])
    # The next day: anna once more, then a stranger, seen twice.
    store.add_event(cipher, "person_seen", "cam_00000000000000a1", DAY + 86400 + 9 * 3600, DAY + 86400 + 9 * 3600 + 60,
                    {"person_id": anna, "external_id": "anna", "tracks": 1})
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.put_unknown(cipher, "unk_00000000000000c1", vectors, DAY + 86400 + 10 * 3600, DAY + 86400 + 11 * 3600, "test/8")
    for at in (10, 11):
        store.add_event(cipher, "unknown_seen", "cam_00000000000000a1", DAY + 86400 + at * 3600, DAY + 86400 + at * 3600 + 20,
                        {"unknown_id": "unk_00000000000000c1", "tracks": 1})
    # A second stranger, promoted to a person: their event names the person and still the unknown id.
    promoted = store.add_event(cipher, "unknown_seen", "cam_00000000000000a1", DAY + 86400 + 12 * 3600,
                               DAY + 86400 + 12 * 3600 + 10, {"unknown_id": "unk_00000000000000c2", "tracks": 1})
    store.update_event(cipher, cipher_for, promoted["seq"], 0.0, {"person_id": "c" * 32, "external_id": "visitor-1"})
    webhook = store.add_webhook(cipher, "https://hooks.example/x", "whsec_dGVzdA==", [], 3)
    for seq in seqs:
        store.add_delivery(webhook, seq)
    store.close()


def dump(sql_path: Path) -> None:
    """The legacy file written in a temporary directory, its SQL (schema and rows, blobs as hex) to `sql_path`."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.db"
        main(db)
        conn = sqlite3.connect(db)
        sql_path.write_text("\n".join(conn.iterdump()) + "\n")
        conn.close()


if __name__ == "__main__":
    dump(Path(sys.argv[1]))
