"""The `events` table: sightings, who/what sealed; found by time, camera, kind and the blind-index tags of whom
they are about (streams/event_index.py), by which `person=` filters, relinks, attendance and person deletion
select their rows and open only those. Events of a file from before the tags are tagged in batches."""

from __future__ import annotations

import json
import time
import uuid
from typing import NamedTuple

from kms.records import key_version_of
from streams.event_index import TAG_COLUMNS, EventKeys
from streams.store.file import StreamFile
from streams.store.schema import BACKFILL_LAST, BACKFILL_NEXT, MAX_SPAN, SET_TAGS
from tenancy.sqlite import columns


class EventRow(NamedTuple):
    """An event as read back (its tags stay in SQL)."""

    seq: int
    event_id: str
    kind: str
    stream_id: str
    created_at: float
    first_seen: float
    last_seen: float
    sealed: bytes  # the token (kms/records.py) of the JSON payload


class SealedEvent(NamedTuple):
    seq: int
    event_id: str
    sealed: bytes


_SELECT = f"SELECT {columns(EventRow)} FROM events"
_INSERT = ("INSERT INTO events (event_id, kind, stream_id, created_at, first_seen, last_seen, key_version, sealed,"
           f" {', '.join(TAG_COLUMNS.values())}) VALUES (?,?,?,?,?,?,?,?,?,?,?)")


class EventRows:
    def __init__(self, file: StreamFile) -> None:
        self.file = file
        self._max_span = file.meta(MAX_SPAN, 0.0)
        self._indexed = file.meta(BACKFILL_NEXT, 0) >= file.meta(BACKFILL_LAST, 0)

    def add_event(self, keys: EventKeys, kind: str, stream_id: str, first_seen: float, last_seen: float, payload: dict) -> dict:
        event_id = "evt_" + uuid.uuid4().hex[:20]
        created = time.time()
        sealed = self.file.seal(keys.current, "events", event_id, json.dumps(payload).encode())
        version = keys.current.key_version
        with self.file.lock:
            self.file.db.execute(_INSERT, (event_id, kind, stream_id, created, first_seen, last_seen, version, sealed,
                                           *keys.tags(version, payload)))
            seq = self.file.db.last_insert_rowid()
            self._spans(last_seen - first_seen)
        return self._view(EventRow(seq, event_id, kind, stream_id, created, first_seen, last_seen, sealed), payload)

    def _spans(self, span: float) -> None:
        if span > self._max_span:
            self._max_span = span
            self.file.set_meta(MAX_SPAN, span)

    def update_event(self, keys: EventKeys, seq: int, last_seen: float, changes: dict) -> dict | None:
        """Extend an event (a track went on, or the same person came back within the cooldown), or relink it
        (`changes` names another person): re-sealed and re-tagged under the current key version."""
        with self.file.lock:
            found = self.file.db.execute(f"{_SELECT} WHERE seq = ?", (seq,)).fetchone()
            if found is None:
                return None
            row = EventRow._make(found)
            payload = json.loads(self.file.open(keys, "events", row.event_id, row.sealed))
            payload.update(changes)
            last_seen = max(last_seen, row.last_seen)
            sealed, version = self.file.seal(keys.current, "events", row.event_id, json.dumps(payload).encode()), keys.current.key_version
            self.file.db.execute(f"UPDATE events SET last_seen = ?, key_version = ?, sealed = ?, {SET_TAGS} WHERE seq = ?",
                                 (last_seen, version, sealed, *keys.tags(version, payload), seq))
            self._spans(last_seen - row.first_seen)
        return self._view(row._replace(last_seen=last_seen), payload)

    def events(self, keys: EventKeys, since: int = 0, limit: int = 100, stream_id: str | None = None,
               kind: str | None = None, person: str | None = None) -> list[dict]:
        """Events after sequence number `since`, oldest first, filtered. `person` is a person id, an external
        id or an anonymous id: the rows whose tags say so are opened, and kept if their payload says so too."""
        where, args = ["seq > ?"], [since]
        if stream_id:
            where.append("stream_id = ?"); args.append(stream_id)  # noqa: E702
        if kind:
            where.append("kind = ?"); args.append(kind)  # noqa: E702
        if person is not None:
            self.index_legacy_events(keys, batch=None)
            selects = []
            for field, column in TAG_COLUMNS.items():
                tags = keys.lookup(field, person)
                selects.append(f"SELECT seq FROM events WHERE {column} IN ({','.join('?' * len(tags))})")
                args += tags
            where.append(f"seq IN ({' UNION '.join(selects)})")
        out: list[dict] = []
        cursor = since
        while len(out) < limit:
            with self.file.lock:
                rows = list(map(EventRow._make, self.file.db.execute(
                    f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", [cursor, *args[1:], 500])))
            if not rows:
                break
            for row in rows:
                payload = json.loads(self.file.open(keys, "events", row.event_id, row.sealed))
                if person is None or person in (payload.get("person_id"), payload.get("external_id"), payload.get("unknown_id")):
                    out.append(self._view(row, payload))
                    if len(out) == limit:
                        break
            cursor = rows[-1].seq
        return out

    def person_sightings(self, keys: EventKeys, day_start: float, day_end: float) -> list[tuple]:
        """(seq, camera, first_seen, last_seen, person tag) of the person_seen events overlapping [day_start,
        day_end), by seq, none opened: found by time (first_seen within the longest event's span of the day)."""
        self.index_legacy_events(keys, batch=None)
        with self.file.lock:
            return self.file.db.execute("SELECT seq, stream_id, first_seen, last_seen, person_tag FROM events WHERE first_seen >= ?"
                                    " AND first_seen < ? AND last_seen >= ? AND kind = 'person_seen' ORDER BY seq",
                                    (day_start - self._max_span, day_end, day_start)).fetchall()

    def payload(self, keys: EventKeys, seq: int) -> dict:
        """The opened payload of event `seq`."""
        with self.file.lock:
            row = SealedEvent._make(self.file.db.execute(f"SELECT {columns(SealedEvent)} FROM events WHERE seq = ?", (seq,)).fetchone())
        return json.loads(self.file.open(keys, "events", row.event_id, row.sealed))

    def delete_events_of(self, keys: EventKeys, key: str, value: str) -> int:
        """Delete every event whose payload has `key` (person_id, external_id or unknown_id) == value: the rows
        its tag selects, each opened and checked."""
        self.index_legacy_events(keys, batch=None)
        tags = keys.lookup(key, value)
        with self.file.lock, self.file.db:
            rows = self.file.db.execute(f"SELECT seq FROM events WHERE {TAG_COLUMNS[key]} IN ({','.join('?' * len(tags))})", tags).fetchall()
            doomed = [(seq,) for (seq,) in rows if self.payload(keys, seq).get(key) == value]
            self.file.db.executemany("DELETE FROM events WHERE seq = ?", doomed)
            self.file.db.executemany("DELETE FROM deliveries WHERE seq = ?", doomed)
        if doomed:
            self.file.checkpoint()
        return len(doomed)

    def index_legacy_events(self, keys: EventKeys, batch: int | None = 2000) -> bool:
        """Tag events written before the blind index (a migrated file), `batch` of them in one commit (None: all
        that are left). Returns whether any are still untagged. `keys` holds every version they are under."""
        while not self._indexed:
            with self.file.lock, self.file.db:
                done, last = self.file.meta(BACKFILL_NEXT, 0), self.file.meta(BACKFILL_LAST, 0)
                rows = list(map(SealedEvent._make, self.file.db.execute(
                    f"SELECT {columns(SealedEvent)} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (done, last, batch or -1))))
                self.file.db.executemany(f"UPDATE events SET {SET_TAGS} WHERE seq = ?",
                                         [(*keys.tags(key_version_of(row.sealed),
                                                      json.loads(self.file.open(keys, "events", row.event_id, row.sealed))), row.seq)
                                          for row in rows])
                done = rows[-1].seq if rows and batch else last
                self.file.set_meta(BACKFILL_NEXT, done)
                self._indexed = done >= last
            if batch:
                break
        return not self._indexed

    def relink_events(self, keys: EventKeys, old_id: str, person_id: str, external_id: str | None) -> int:
        """In one transaction: the events naming `old_id` (an unknown, a merged person) name the person; how many."""
        with self.file.lock, self.file.db:
            seqs = [e["seq"] for e in self.events(keys, 0, 10**9, person=old_id)]
            for seq in seqs:
                self.update_event(keys, seq, 0.0, {"person_id": person_id, "external_id": external_id})
        return len(seqs)

    def delete_events_before(self, cutoff: float) -> int:
        with self.file.lock:
            self.file.db.execute("DELETE FROM events WHERE last_seen < ?", (cutoff,))
            n = self.file.db.changes()
            if n:
                self.file.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def event(self, keys: EventKeys, seq: int) -> dict | None:
        found = self.events(keys, seq - 1, 1)
        return found[0] if found and found[0]["seq"] == seq else None

    @staticmethod
    def _view(row: EventRow, payload: dict) -> dict:
        return {"seq": row.seq, "event_id": row.event_id, "kind": row.kind, "camera": row.stream_id, "created_at": row.created_at,
                "first_seen": row.first_seen, "last_seen": row.last_seen, **payload}
