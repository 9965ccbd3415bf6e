"""The event log at size (issue 26 §3): a person's events, relinks, attendance and deletion found by the events'
blind index (only the rows it selects are opened), the tags following a content-key rotation, and an events.db
written by the code before the index (356442b) migrated forward on open. Real StreamStore files, real key
hierarchy (kms.Keyring with the local provider), raw file bytes searched."""

from __future__ import annotations

from pathlib import Path

import apsw
import numpy as np
import pytest

from kms import Keyring
from kms.providers.local import LocalKeyProvider
from kms.records import RecordCipher
from streams.attendance import attendance
from streams.event_index import INDEX_PURPOSE, RECORD_PURPOSE, EventKeys
from streams.store import StreamStore

# The SQL of an events.db that 356442b's StreamStore wrote (tests/streams/make_events_db.py), kept as text.
LEGACY_SQL = Path(__file__).with_name("data") / "events-356442b.sql"
LEGACY_KEY = bytes(range(32))  # tests/streams/make_events_db.py sealed the legacy file under it, as version 1
LEGACY_TENANT = "tenant-legacy"
LEGACY_DAY = 1_699_920_000.0  # 2023-11-14 00:00 UTC, the legacy file's first day
ANNA, BEN, VISITOR = "a" * 32, "b" * 32, "c" * 32
DAY = 1_750_000_000.0 - 1_750_000_000.0 % 86400


def write_legacy_file(path: Path) -> None:
    """The legacy events.db at `path`, rebuilt from its SQL (the rows and schema 356442b wrote, byte for byte)."""
    conn = apsw.Connection(str(path))
    conn.execute(LEGACY_SQL.read_text())
    conn.close()


@pytest.fixture
def keyring(tmp_path: Path):
    ring = Keyring(LocalKeyProvider(tmp_path / "keys" / "root.key"), tmp_path / "keys" / "keystore.db")
    ring.create_tenant("t1")
    yield ring
    ring.close()


def keys_of(keyring: Keyring, tenant: str = "t1", versions=None, current=None) -> EventKeys:
    """The tenant's event keys as the StreamSupervisor holds them: record ciphers and index keys of `versions`."""
    current = keyring.current_version(tenant) if current is None else current
    keys = EventKeys(tenant_id=tenant)
    for version in versions or [current]:
        keys.add(version, keyring.data_key(tenant, RECORD_PURPOSE, version).cipher(),
                 keyring.data_key(tenant, INDEX_PURPOSE, version).key, current=version == current)
    return keys


class CountingKeys(EventKeys):
    """The real keys, counting how many sealed values are opened (each open asks for its version's cipher)."""

    opened = 0

    def __call__(self, version: int) -> RecordCipher:
        self.opened += 1
        return super().__call__(version)


def counting(keys: EventKeys) -> CountingKeys:
    out = CountingKeys(tenant_id=keys.tenant_id)
    out.__dict__.update(keys.__dict__)
    return out


def open_store(tmp_path: Path, tenant: str = "t1") -> StreamStore:
    return StreamStore(tmp_path / "tenants" / tenant / "events.db", tenant)


def seed(store: StreamStore, keys: EventKeys, people: int = 20, days: int = 3) -> list[dict]:
    """Every person seen on two cameras several times a day, a stranger now and then; some events last long
    (one crosses midnight). Returns what was written, as add_event answered."""
    rng = np.random.default_rng(4)
    written = []
    for day in range(days):
        for hour in range(6, 20):
            for person in rng.choice(people, size=4, replace=False):
                start = DAY + day * 86400 + hour * 3600 + float(rng.integers(0, 3000))
                written.append(store.add_event(keys, "person_seen", f"cam_{hour % 2}", start, start + float(rng.integers(5, 600)),
                                               {"person_id": f"p{person:031d}", "external_id": f"emp-{person}", "tracks": 1}))
            start = DAY + day * 86400 + hour * 3600 + 1800
            written.append(store.add_event(keys, "unknown_seen", "cam_0", start, start + 20, {"unknown_id": f"unk_{hour % 3:016d}"}))
    # The night guard: on shift from 22:00 on the first day to 06:00 the next, one event.
    written.append(store.add_event(keys, "person_seen", "cam_1", DAY + 22 * 3600, DAY + 30 * 3600,
                                   {"person_id": "g" * 32, "external_id": "guard", "tracks": 1}))
    return written


def reference_attendance(events: list[dict], start: float, end: float) -> list[dict]:
    """The definition, from every event opened: per person, over their person_seen events overlapping the day, the
    earliest start and the latest end (the first such event by seq on ties), and the external id of their first."""
    day = [e for e in events if e["kind"] == "person_seen" and e["last_seen"] >= start and e["first_seen"] < end]
    rows = []
    for person in {e["person_id"] for e in day}:
        theirs = sorted((e for e in day if e["person_id"] == person), key=lambda e: e["seq"])
        first = min(theirs, key=lambda e: (e["first_seen"], e["seq"]))
        last = max(theirs, key=lambda e: (e["last_seen"], -e["seq"]))
        rows.append(({"person_id": person, "external_id": theirs[0].get("external_id"), "first_in": first["first_seen"],
                      "last_out": last["last_seen"], "first_camera": first["camera"], "last_camera": last["camera"],
                      "events": len(theirs)}, theirs[0]["seq"]))
    return [row for row, _ in sorted(rows, key=lambda r: (r[0]["first_in"], r[1]))]


def raw_file(store: StreamStore) -> bytes:
    return b"".join(Path(f"{store.path}{s}").read_bytes() for s in ("", "-wal") if Path(f"{store.path}{s}").exists())


# ------------------------------------------------------------------------------------------------- the index
def test_a_persons_events_are_found_by_the_index_and_only_theirs_are_opened(tmp_path, keyring):
    store, keys = open_store(tmp_path), keys_of(keyring)
    written = seed(store, keys)
    person = written[0]["person_id"]
    theirs = [e["seq"] for e in written if e.get("person_id") == person]
    assert len(theirs) >= 5 and len(written) > 10 * len(theirs)

    probe = counting(keys)
    by_id = store.events(probe, 0, 10**6, person=person)
    assert [e["seq"] for e in by_id] == theirs
    assert probe.opened == len(theirs)  # the index selected them: nobody else's event was opened
    external = written[0]["external_id"]
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person=external)] == theirs
    unknown = next(e for e in written if e["kind"] == "unknown_seen")["unknown_id"]
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person=unknown)] == \
        [e["seq"] for e in written if e.get("unknown_id") == unknown]
    # filters compose with the index; paging by `since` and `limit` as before
    assert [e["seq"] for e in store.events(keys, theirs[1], 2, person=person)] == theirs[2:4]
    assert [e["seq"] for e in store.events(keys, 0, 10**6, stream_id="cam_1", person=person)] == \
        [e["seq"] for e in written if e.get("person_id") == person and e["camera"] == "cam_1"]
    assert store.events(keys, 0, 10, person="nobody") == []
    # the file holds tags, never the ids they stand for
    raw = raw_file(store)
    assert person.encode() not in raw and external.encode() not in raw and unknown.encode() not in raw


def test_the_tags_are_keyed_per_tenant_and_per_field(tmp_path, keyring):
    keyring.create_tenant("t2")
    one, two = keys_of(keyring, "t1"), keys_of(keyring, "t2")
    payload = {"person_id": "x" * 32, "external_id": "x" * 32, "unknown_id": None}
    person_tag, external_tag, unknown_tag = one.tags(1, payload)
    assert unknown_tag is None and person_tag != external_tag  # the same string in two fields: unrelated tags
    assert two.tags(1, payload)[0] != person_tag  # another tenant's key: another tag
    assert one.lookup("person_id", "x" * 32) == [person_tag]


def test_deleting_a_person_deletes_their_events_and_deliveries_only(tmp_path, keyring):
    store, keys = open_store(tmp_path), keys_of(keyring)
    written = seed(store, keys)
    person = written[0]["person_id"]
    hook = store.add_webhook(keys.current, "https://hooks.example/x", "whsec_x", [], 3)
    for e in written[:40]:
        store.add_delivery(hook, e["seq"])
    probe = counting(keys)
    removed = store.delete_events_of(probe, "person_id", person)
    assert removed == len([e for e in written if e.get("person_id") == person]) and probe.opened == removed
    assert store.events(keys, 0, 10**6, person=person) == []
    left = store.events(keys, 0, 10**6)
    assert [e["seq"] for e in left] == [e["seq"] for e in written if e.get("person_id") != person]
    assert {d["seq"] for d in store.deliveries(hook, limit=1000)} == {e["seq"] for e in written[:40] if e.get("person_id") != person}


def test_a_relinked_event_is_found_under_its_new_person_and_still_under_its_unknown(tmp_path, keyring):
    store, keys = open_store(tmp_path), keys_of(keyring)
    written = seed(store, keys)
    unknown = next(e for e in written if e["kind"] == "unknown_seen")["unknown_id"]
    of_unknown = [e["seq"] for e in written if e.get("unknown_id") == unknown]
    assert store.relink_events(keys, unknown, VISITOR, "visitor-1") == len(of_unknown)
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person=VISITOR)] == of_unknown
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person="visitor-1")] == of_unknown
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person=unknown)] == of_unknown  # the payload keeps it
    # a merge: one person's events go to another
    person = written[0]["person_id"]
    theirs = [e["seq"] for e in written if e.get("person_id") == person]
    assert store.relink_events(keys, person, VISITOR, "visitor-1") == len(theirs)
    assert store.events(keys, 0, 10**6, person=person) == []
    assert [e["seq"] for e in store.events(keys, 0, 10**6, person=VISITOR)] == sorted(of_unknown + theirs)


def test_attendance_opens_one_event_per_person_and_agrees_with_opening_everything(tmp_path, keyring):
    store, keys = open_store(tmp_path), keys_of(keyring)
    written = seed(store, keys)
    everything = store.events(keys, 0, 10**6)
    for day in range(3):
        start = DAY + day * 86400
        probe = counting(keys)
        rows = attendance(store, probe, start, start + 86400)
        assert rows == reference_attendance(everything, start, start + 86400)
        assert probe.opened == len(rows) and len(rows) >= 15
    # the guard's night shift counts on both days it touches, found although it began the day before
    second = attendance(store, keys, DAY + 86400, DAY + 2 * 86400)
    assert next(r for r in second if r["external_id"] == "guard")["first_in"] == DAY + 22 * 3600
    assert attendance(store, keys, DAY - 86400, DAY) == []
    assert attendance(store, keys, DAY + 3 * 86400, DAY + 4 * 86400) == []
    assert len(written) == len(everything)


# ------------------------------------------------------------------------------------------------- rotation
def test_a_rotation_retags_and_lookups_hold_before_during_and_after(tmp_path, keyring):
    store, v1 = open_store(tmp_path), keys_of(keyring)
    written = seed(store, v1, days=1)
    person = written[0]["person_id"]
    theirs = [e["seq"] for e in written if e.get("person_id") == person]
    start = DAY
    before = attendance(store, v1, start, start + 86400)

    keyring.rotate_tenant("t1")
    both = keys_of(keyring, versions=[1, 2], current=2)
    # mid-rotation: new events and an extended one are under version 2, the rest still under 1
    store.update_event(both, theirs[0], written[0]["last_seen"] + 1, {"tracks": 2})
    assert store.key_versions() == {1, 2}
    assert [e["seq"] for e in store.events(both, 0, 10**6, person=person)] == theirs
    assert attendance(store, both, start, start + 86400)[0]["events"] == before[0]["events"]
    assert store.reseal(both) == len(written) - 1
    assert store.key_versions() == {2}
    after = keys_of(keyring, versions=[2], current=2)  # version 1 retired: its index key is gone too
    assert [e["seq"] for e in store.events(after, 0, 10**6, person=person)] == theirs
    assert [e["seq"] for e in store.events(after, 0, 10**6, person=written[0]["external_id"])] == theirs
    assert [{**r, "last_out": None} for r in attendance(store, after, start, start + 86400)] == \
        [{**r, "last_out": None} for r in before]


# ------------------------------------------------------------------------------------------------- migration
def legacy_keys() -> EventKeys:
    """The legacy file's record key, with an index key of the tenant's (any key: the file had no tags)."""
    return EventKeys(tenant_id=LEGACY_TENANT).add(1, RecordCipher(LEGACY_KEY, 1), bytes(range(32, 64)), current=True)


def columns(path: Path) -> set[str]:
    db = apsw.Connection(str(path))
    try:
        return {row[1] for row in db.execute("PRAGMA table_info(events)")}
    finally:
        db.close()


def test_an_events_file_written_before_the_index_migrates_forward_on_open(tmp_path):
    path = tmp_path / "tenants" / LEGACY_TENANT / "events.db"
    path.parent.mkdir(parents=True)
    write_legacy_file(path)
    assert "person_tag" not in columns(path)
    keys = legacy_keys()

    store = StreamStore(path, LEGACY_TENANT)
    assert {"person_tag", "external_tag", "unknown_tag"} <= columns(path)
    # tagged in batches, its progress kept in the file: a store closed mid-way picks up where it stopped
    assert store.index_legacy_events(keys, batch=3) is True
    store.close()
    store = StreamStore(path, LEGACY_TENANT)
    assert store.index_legacy_events(keys, batch=3) is True
    assert store.index_legacy_events(keys, batch=3) is False
    assert store.index_legacy_events(keys, batch=3) is False

    everything = store.events(keys, 0, 100)
    assert [e["seq"] for e in everything] == list(range(1, 9))
    anna = [e["seq"] for e in everything if e.get("person_id") == ANNA]
    assert [e["seq"] for e in store.events(keys, 0, 100, person=ANNA)] == anna == [1, 3, 5]
    assert [e["seq"] for e in store.events(keys, 0, 100, person="anna")] == anna
    assert [e["seq"] for e in store.events(keys, 0, 100, person="unk_00000000000000c1")] == [6, 7]
    assert [e["seq"] for e in store.events(keys, 0, 100, person="visitor-1")] == [8]  # promoted before the index
    first_day = attendance(store, keys, LEGACY_DAY, LEGACY_DAY + 86400)
    assert first_day == reference_attendance(everything, LEGACY_DAY, LEGACY_DAY + 86400)
    assert [(r["external_id"], r["events"]) for r in first_day] == [("anna", 2), ("ben", 2)]
    # everything else of the file still opens: its camera, its unknown, its webhook and deliveries
    (stream,) = store.streams(keys)
    assert (stream["name"], stream["url"]) == ("front door", "rtsp://user:pw@camera/1")
    assert store.unknowns(keys)["unk_00000000000000c1"]["vectors"].shape == (3, 8)
    (hook,) = store.webhooks(keys)
    assert len(store.deliveries(hook["webhook_id"])) == 4
    assert store.delete_events_of(keys, "person_id", BEN) == 2
    assert store.events(keys, 0, 100, person="ben") == []
    assert store.key_versions() == {1}
    store.close()


def test_a_lookup_on_a_file_not_yet_indexed_finishes_the_index_first(tmp_path):
    path = tmp_path / "events.db"
    write_legacy_file(path)
    store = StreamStore(path, LEGACY_TENANT)
    keys = legacy_keys()
    assert [e["seq"] for e in store.events(keys, 0, 100, person=BEN)] == [2, 4]
    assert store.index_legacy_events(keys) is False
    store.close()

