"""The `events` table: sightings, who/what sealed; found by time, camera, kind and the blind-index tags of whom
they are about (streams/event_index.py), by which `person=` filters, relinks, attendance and person deletion
select their rows and open only those. Events of a file from before the tags are tagged in batches."""

from __future__ import annotations

import json
import time
import uuid

from streams.event_index import TAG_COLUMNS, EventKeys
from streams.store.file import CameraFile
from streams.store.schema import BACKFILL_LAST, BACKFILL_NEXT, MAX_SPAN, SET_TAGS


class EventRows:
    def __init__(self, file: CameraFile) -> None:
        self.file = file
        self._max_span = file.meta(MAX_SPAN, 0.0)
        self._indexed = file.meta(BACKFILL_NEXT, 0) >= file.meta(BACKFILL_LAST, 0)

    def add_event(self, keys: EventKeys, kind: str, stream_id: str, first_seen: float, last_seen: float, payload: dict) -> dict:
        event_id = "evt_" + uuid.uuid4().hex[:20]
        created = time.time()
        sealed = self.file.seal(keys.current, "events", event_id, json.dumps(payload).encode())
        with self.file.lock:
            self.file.db.execute(
                "INSERT INTO events (event_id, kind, stream_id, created_at, first_seen, last_seen, key_version, nonce, payload,"
                " person_tag, external_tag, unknown_tag) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (event_id, kind, stream_id, created, first_seen, last_seen, sealed.key_version, sealed.nonce, sealed.ciphertext,
                 *keys.tags(sealed.key_version, payload)))
            seq = self.file.db.last_insert_rowid()
            self._spans(last_seen - first_seen)
        return self._view(seq, event_id, kind, stream_id, created, first_seen, last_seen, payload)

    def _spans(self, span: float) -> None:
        if span > self._max_span:
            self._max_span = span
            self.file.set_meta(MAX_SPAN, span)

    def update_event(self, keys: EventKeys, seq: int, last_seen: float, changes: dict) -> dict | None:
        """Extend an event (a track went on, or the same person came back within the cooldown), or relink it
        (`changes` names another person): re-sealed and re-tagged under the current key version."""
        with self.file.lock:
            row = self.file.db.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return None
            payload = json.loads(self.file.open(keys, "events", row[1], row[7], row[8], row[9]))
            payload.update(changes)
            last_seen = max(last_seen, row[6])
            sealed = self.file.seal(keys.current, "events", row[1], json.dumps(payload).encode())
            self.file.db.execute(f"UPDATE events SET last_seen = ?, key_version = ?, nonce = ?, payload = ?, {SET_TAGS} WHERE seq = ?",
                             (last_seen, sealed.key_version, sealed.nonce, sealed.ciphertext, *keys.tags(sealed.key_version, payload), seq))
            self._spans(last_seen - row[5])
        return self._view(seq, row[1], row[2], row[3], row[4], row[5], last_seen, payload)

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
                rows = self.file.db.execute(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                                        [cursor, *args[1:], 500]).fetchall()
            if not rows:
                break
            for r in rows:
                payload = json.loads(self.file.open(keys, "events", r[1], r[7], r[8], r[9]))
                if person is None or person in (payload.get("person_id"), payload.get("external_id"), payload.get("unknown_id")):
                    out.append(self._view(r[0], r[1], r[2], r[3], r[4], r[5], r[6], payload))
                    if len(out) == limit:
                        break
            cursor = rows[-1][0]
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
            row = self.file.db.execute("SELECT event_id, key_version, nonce, payload FROM events WHERE seq = ?", (seq,)).fetchone()
        return json.loads(self.file.open(keys, "events", *row))

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
                rows = self.file.db.execute("SELECT seq, event_id, key_version, nonce, payload FROM events WHERE seq > ? AND seq <= ?"
                                        " ORDER BY seq LIMIT ?", (done, last, batch or -1)).fetchall()
                self.file.db.executemany(f"UPDATE events SET {SET_TAGS} WHERE seq = ?",
                                     [(*keys.tags(version, json.loads(self.file.open(keys, "events", event_id, version, nonce, payload))), seq)
                                      for seq, event_id, version, nonce, payload in rows])
                done = rows[-1][0] if rows and batch else last
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
    def _view(seq, event_id, kind, stream_id, created, first_seen, last_seen, payload) -> dict:
        return {"seq": seq, "event_id": event_id, "kind": kind, "camera": stream_id, "created_at": created,
                "first_seen": first_seen, "last_seen": last_seen, **payload}
