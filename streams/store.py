"""A tenant's camera data at rest: `{data_dir}/tenants/{id}/events.db`, beside its faces, removed with them.

Tables: `streams` (camera registrations; the name and the URL, which may hold credentials, sealed), `events` (sightings;
who/what sealed), `unknowns` (anonymous re-identification vectors, sealed like faces, with the model that
embedded them), `promotions` (an unknown being made a person: the person id chosen, so a retried or recovered
promotion makes that one person), `webhooks` (URL and signing secret sealed) and `deliveries` (webhook delivery
state, no payload: it is rebuilt from the event). Every sealed column is AES-256-GCM under the tenant's content
key (KeyService purpose `events`), with associated data binding it to (tenant, table, row id), and an unknown's
vectors also to their model: a row moved elsewhere, or relabelled with another model, does not open.

In clear, only what the queries need and nothing personal: row ids, times, the event kind, the camera id, and
the blind-index tags of whom an event is about (streams/event_index.py), by which `person=` filters, relinks,
attendance and person deletion select their rows and open only those.

Older files migrate forward on open. Unknowns from before the model was bound are bound to the model the
caller names (`bind_legacy_unknowns`: the cameras' model, the only one that ever embedded camera faces).
Events from before the tags get the columns, then their tags (`index_legacy_events`, progress in `meta`).

One writer: the StreamRouter deployment (one replica, like registry.db). Opened by `tenancy.sqlite.connect`
(WAL, synchronous=FULL, secure_delete, 0600); every statement under `_lock` (apsw: one thread at a time).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kms.records import RecordCipher, SealedRecord
from streams.event_index import TAG_COLUMNS, EventKeys
from tenancy import sqlite

VECTOR_DTYPE = np.dtype("<f4")
MAX_UNKNOWN_SAMPLES = 8  # vectors kept per anonymous id (the newest); enough to re-identify across photos

CipherFor = Callable[[int], RecordCipher]


def events_path(data_dir: str | Path, tenant_id: str) -> Path:
    return Path(data_dir) / "tenants" / tenant_id / "events.db"


def _aad(tenant_id: str, table: str, row_id: str, *bound: str) -> bytes:
    """(tenant, table, row id), then whatever else the value is bound to (an unknown's model); each part
    length-prefixed, so no two tuples give the same bytes."""
    parts = [b"securegate.streams.v1", tenant_id.encode(), table.encode(), row_id.encode(), *(b.encode() for b in bound)]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


TABLES = """
CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL,
    created_at REAL NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, sealed_url BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL, stream_id TEXT NOT NULL, created_at REAL NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL,
    person_tag BLOB, external_tag BLOB, unknown_tag BLOB);
CREATE TABLE IF NOT EXISTS unknowns (unknown_id TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen REAL NOT NULL,
    samples INTEGER NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, vectors BLOB NOT NULL, model TEXT);
CREATE TABLE IF NOT EXISTS promotions (unknown_id TEXT PRIMARY KEY, person_id TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (webhook_id TEXT PRIMARY KEY, created_at REAL NOT NULL, kinds TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at REAL NOT NULL, last_status INTEGER,
    last_error TEXT, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS events_first_seen ON events(first_seen);
CREATE INDEX IF NOT EXISTS events_key_version ON events(key_version);
CREATE INDEX IF NOT EXISTS events_person_tag ON events(person_tag, seq) WHERE person_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_external_tag ON events(external_tag, seq) WHERE external_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_unknown_tag ON events(unknown_tag, seq) WHERE unknown_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS unknowns_key_version ON unknowns(key_version);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
"""
SET_TAGS = ", ".join(f"{column} = ?" for column in TAG_COLUMNS.values())
# meta: the longest event's span (a day's events have first_seen within it of the day); legacy events to tag.
MAX_SPAN, BACKFILL_NEXT, BACKFILL_LAST = "max_span_s", "backfill_next_seq", "backfill_last_seq"


class CameraStore:
    def __init__(self, path: str | Path, tenant_id: str) -> None:
        self.path, self.tenant_id = Path(path), tenant_id
        self._lock = threading.RLock()
        self._db = sqlite.connect(self.path)
        with self._db:
            self._db.execute(TABLES)
            # Files from before unknowns were bound to their model: the column, NULL (legacy) on their rows.
            columns = {(table, row[1]) for table in ("unknowns", "events") for row in self._db.execute(f"PRAGMA table_info({table})")}
            if ("unknowns", "model") not in columns:
                self._db.execute("ALTER TABLE unknowns ADD COLUMN model TEXT")
            # Files from before the events' blind index: the columns, and every event there is to be tagged.
            if ("events", "person_tag") not in columns:
                for column in TAG_COLUMNS.values():
                    self._db.execute(f"ALTER TABLE events ADD COLUMN {column} BLOB")
                last, span = self._db.execute("SELECT IFNULL(MAX(seq), 0), IFNULL(MAX(last_seen - first_seen), 0) FROM events").fetchone()
                self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", [(BACKFILL_NEXT, 0), (BACKFILL_LAST, last), (MAX_SPAN, span)])
            self._db.execute(INDEXES)  # after the migrations: a legacy file has its tag columns now
        self._max_span = self._meta(MAX_SPAN, 0.0)
        self._indexed = self._meta(BACKFILL_NEXT, 0) >= self._meta(BACKFILL_LAST, 0)

    def _meta(self, name: str, default: float) -> float:
        with self._lock:
            return next(iter(self._db.execute("SELECT value FROM meta WHERE name = ?", (name,))), (default,))[0]

    def _set_meta(self, name: str, value: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (name, value))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _checkpoint(self) -> None:
        """After a deletion: secure_delete zeroed the rows in the file; the WAL's copies of their pages go too."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- sealing ------------------------------------------------------------------------------------------
    def _seal(self, cipher: RecordCipher, table: str, row_id: str, plaintext: bytes, *bound: str) -> SealedRecord:
        return cipher.seal(plaintext, aad=_aad(self.tenant_id, table, row_id, *bound))

    def _open(self, cipher_for: CipherFor, table: str, row_id: str, version: int, nonce: bytes, ciphertext: bytes,
              *bound: str) -> bytes:
        return cipher_for(version).open(SealedRecord(nonce, ciphertext, version), aad=_aad(self.tenant_id, table, row_id, *bound))

    def key_versions(self) -> set[int]:
        """The content-key versions sealed values are under. Every sighting asks (its ciphers): the big tables are
        walked along their key_version index, one probe per distinct version, never row by row."""
        with self._lock:
            found = {r[0] for r in self._db.execute("SELECT key_version FROM streams UNION SELECT key_version FROM webhooks")}
            for table in ("events", "unknowns"):
                version, probe = -1, f"SELECT MIN(key_version) FROM {table} WHERE key_version > ?"
                while (version := self._db.execute(probe, (version,)).fetchone()[0]) is not None:
                    found.add(version)
        return found

    # (table, id column, sealed column): every sealed value, for re-sealing under a new key version.
    SEALED = (("streams", "stream_id", "sealed_url"), ("events", "event_id", "payload"),
              ("unknowns", "unknown_id", "vectors"), ("webhooks", "webhook_id", "sealed"))

    def reseal(self, keys: EventKeys) -> int:
        """Re-seal every value sealed under another key version with the current one (after a content-key
        rotation, before the old version is retired); an event's tags are recomputed under the new version's
        index key with it. Returns how many values were re-sealed."""
        current = keys.current
        done = self._seal_legacy_stream_names(keys, current)
        for table, id_column, column in self.SEALED:
            bound = "model" if table == "unknowns" else "NULL"  # what else the value's associated data names
            with self._lock:
                rows = self._db.execute(f"SELECT {id_column}, key_version, nonce, {column}, {bound} FROM {table} WHERE key_version != ?",
                                        (current.key_version,)).fetchall()
            for row_id, version, nonce, ciphertext, model in rows:
                also = () if model is None else (model,)
                plaintext = self._open(keys, table, row_id, version, nonce, ciphertext, *also)
                sealed = self._seal(current, table, row_id, plaintext, *also)
                tags = keys.tags(current.key_version, json.loads(plaintext)) if table == "events" else ()
                retag = f", {SET_TAGS}" if tags else ""
                with self._lock:
                    self._db.execute(f"UPDATE {table} SET key_version = ?, nonce = ?, {column} = ?{retag} WHERE {id_column} = ? AND key_version = ?",
                                     (sealed.key_version, sealed.nonce, sealed.ciphertext, *tags, row_id, version))
                done += 1
        return done

    def _seal_legacy_stream_names(self, cipher_for: CipherFor, current: RecordCipher) -> int:
        """Rows written before names were sealed (name in clear, URL alone sealed): name and URL sealed together."""
        with self._lock:
            rows = self._db.execute("SELECT stream_id, name, key_version, nonce, sealed_url FROM streams WHERE name != ''").fetchall()
        for stream_id, name, version, nonce, ciphertext in rows:
            url = self._open(cipher_for, "streams", stream_id, version, nonce, ciphertext).decode()
            sealed = self._seal(current, "streams", stream_id, json.dumps({"name": name, "url": url}).encode())
            with self._lock:
                self._db.execute("UPDATE streams SET name = '', key_version = ?, nonce = ?, sealed_url = ? WHERE stream_id = ? AND name = ?",
                                 (sealed.key_version, sealed.nonce, sealed.ciphertext, stream_id, name))
        return len(rows)

    # ---- streams ------------------------------------------------------------------------------------------
    def add_stream(self, cipher: RecordCipher, name: str, url: str, config: dict) -> str:
        stream_id = "cam_" + uuid.uuid4().hex[:16]
        self.put_stream(cipher, stream_id, name, url, config, time.time())
        return stream_id

    def put_stream(self, cipher: RecordCipher, stream_id: str, name: str, url: str, config: dict, created_at: float) -> None:
        # The name is the tenant's words too ("Anna's office"): sealed with the URL. The clear `name` column
        # stays empty (API names are never empty); rows written before hold their name there and the URL alone.
        sealed = self._seal(cipher, "streams", stream_id, json.dumps({"name": name, "url": url}).encode())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO streams VALUES (?,?,?,?,?,?,?)",
                             (stream_id, "", json.dumps(config), created_at, sealed.key_version, sealed.nonce, sealed.ciphertext))

    def streams(self, cipher_for: CipherFor) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM streams ORDER BY created_at").fetchall()
        out = []
        for r in rows:
            opened = self._open(cipher_for, "streams", r[0], r[4], r[5], r[6]).decode()
            sealed = json.loads(opened) if r[1] == "" else {"name": r[1], "url": opened}
            out.append({"stream_id": r[0], "name": sealed["name"], "config": json.loads(r[2]), "created_at": r[3],
                        "url": sealed["url"]})
        return out

    def delete_stream(self, stream_id: str) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM streams WHERE stream_id = ?", (stream_id,))
            return self._db.changes() > 0

    # ---- events ---------------------------------------------------------------------------------------------
    def add_event(self, keys: EventKeys, kind: str, stream_id: str, first_seen: float, last_seen: float, payload: dict) -> dict:
        event_id = "evt_" + uuid.uuid4().hex[:20]
        created = time.time()
        sealed = self._seal(keys.current, "events", event_id, json.dumps(payload).encode())
        with self._lock:
            self._db.execute(
                "INSERT INTO events (event_id, kind, stream_id, created_at, first_seen, last_seen, key_version, nonce, payload,"
                " person_tag, external_tag, unknown_tag) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (event_id, kind, stream_id, created, first_seen, last_seen, sealed.key_version, sealed.nonce, sealed.ciphertext,
                 *keys.tags(sealed.key_version, payload)))
            seq = self._db.last_insert_rowid()
            self._spans(last_seen - first_seen)
        return self._view(seq, event_id, kind, stream_id, created, first_seen, last_seen, payload)

    def _spans(self, span: float) -> None:
        if span > self._max_span:
            self._max_span = span
            self._set_meta(MAX_SPAN, span)

    def update_event(self, keys: EventKeys, seq: int, last_seen: float, changes: dict) -> dict | None:
        """Extend an event (a track went on, or the same person came back within the cooldown), or relink it
        (`changes` names another person): re-sealed and re-tagged under the current key version."""
        with self._lock:
            row = self._db.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return None
            payload = json.loads(self._open(keys, "events", row[1], row[7], row[8], row[9]))
            payload.update(changes)
            last_seen = max(last_seen, row[6])
            sealed = self._seal(keys.current, "events", row[1], json.dumps(payload).encode())
            self._db.execute(f"UPDATE events SET last_seen = ?, key_version = ?, nonce = ?, payload = ?, {SET_TAGS} WHERE seq = ?",
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
            with self._lock:
                rows = self._db.execute(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                                        [cursor, *args[1:], 500]).fetchall()
            if not rows:
                break
            for r in rows:
                payload = json.loads(self._open(keys, "events", r[1], r[7], r[8], r[9]))
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
        with self._lock:
            return self._db.execute("SELECT seq, stream_id, first_seen, last_seen, person_tag FROM events WHERE first_seen >= ?"
                                    " AND first_seen < ? AND last_seen >= ? AND kind = 'person_seen' ORDER BY seq",
                                    (day_start - self._max_span, day_end, day_start)).fetchall()

    def payload(self, keys: EventKeys, seq: int) -> dict:
        """The opened payload of event `seq`."""
        with self._lock:
            row = self._db.execute("SELECT event_id, key_version, nonce, payload FROM events WHERE seq = ?", (seq,)).fetchone()
        return json.loads(self._open(keys, "events", *row))

    def delete_events_of(self, keys: EventKeys, key: str, value: str) -> int:
        """Delete every event whose payload has `key` (person_id, external_id or unknown_id) == value: the rows
        its tag selects, each opened and checked."""
        self.index_legacy_events(keys, batch=None)
        tags = keys.lookup(key, value)
        with self._lock, self._db:
            rows = self._db.execute(f"SELECT seq FROM events WHERE {TAG_COLUMNS[key]} IN ({','.join('?' * len(tags))})", tags).fetchall()
            doomed = [(seq,) for (seq,) in rows if self.payload(keys, seq).get(key) == value]
            self._db.executemany("DELETE FROM events WHERE seq = ?", doomed)
            self._db.executemany("DELETE FROM deliveries WHERE seq = ?", doomed)
        if doomed:
            self._checkpoint()
        return len(doomed)

    def index_legacy_events(self, keys: EventKeys, batch: int | None = 2000) -> bool:
        """Tag events written before the blind index (a migrated file), `batch` of them in one commit (None: all
        that are left). Returns whether any are still untagged. `keys` holds every version they are under."""
        while not self._indexed:
            with self._lock, self._db:
                done, last = self._meta(BACKFILL_NEXT, 0), self._meta(BACKFILL_LAST, 0)
                rows = self._db.execute("SELECT seq, event_id, key_version, nonce, payload FROM events WHERE seq > ? AND seq <= ?"
                                        " ORDER BY seq LIMIT ?", (done, last, batch or -1)).fetchall()
                self._db.executemany(f"UPDATE events SET {SET_TAGS} WHERE seq = ?",
                                     [(*keys.tags(version, json.loads(self._open(keys, "events", event_id, version, nonce, payload))), seq)
                                      for seq, event_id, version, nonce, payload in rows])
                done = rows[-1][0] if rows and batch else last
                self._set_meta(BACKFILL_NEXT, done)
                self._indexed = done >= last
            if batch:
                break
        return not self._indexed

    def relink_events(self, keys: EventKeys, old_id: str, person_id: str, external_id: str | None) -> int:
        """In one transaction: the events naming `old_id` (an unknown, a merged person) name the person; how many."""
        with self._lock, self._db:
            seqs = [e["seq"] for e in self.events(keys, 0, 10**9, person=old_id)]
            for seq in seqs:
                self.update_event(keys, seq, 0.0, {"person_id": person_id, "external_id": external_id})
        return len(seqs)

    def delete_events_before(self, cutoff: float) -> int:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE last_seen < ?", (cutoff,))
            n = self._db.changes()
            if n:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def event(self, keys: EventKeys, seq: int) -> dict | None:
        found = self.events(keys, seq - 1, 1)
        return found[0] if found and found[0]["seq"] == seq else None

    @staticmethod
    def _view(seq, event_id, kind, stream_id, created, first_seen, last_seen, payload) -> dict:
        return {"seq": seq, "event_id": event_id, "kind": kind, "camera": stream_id, "created_at": created,
                "first_seen": first_seen, "last_seen": last_seen, **payload}

    # ---- unknowns (anonymous re-identification) ------------------------------------------------------------
    UNKNOWN_COLUMNS = "unknown_id, created_at, last_seen, samples, key_version, nonce, vectors, model"

    def unknowns(self, cipher_for: CipherFor) -> dict[str, dict]:
        """Every unknown with its vectors and `model` (None: written before unknowns were bound to their model)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {self.UNKNOWN_COLUMNS} FROM unknowns").fetchall()
        return {r[0]: self._unknown(cipher_for, r) for r in rows}

    def _unknown(self, cipher_for: CipherFor, r) -> dict:
        bound = () if r[7] is None else (r[7],)
        vectors = np.frombuffer(self._open(cipher_for, "unknowns", r[0], r[4], r[5], r[6], *bound), VECTOR_DTYPE)
        return {"unknown_id": r[0], "created_at": r[1], "last_seen": r[2], "samples": r[3], "model": r[7],
                "vectors": vectors.reshape(r[3], -1).astype(np.float32)}

    def put_unknown(self, cipher: RecordCipher, unknown_id: str, vectors: np.ndarray, created_at: float, last_seen: float,
                    model: str) -> None:
        vectors = np.asarray(vectors, np.float32)[-MAX_UNKNOWN_SAMPLES:]
        sealed = self._seal(cipher, "unknowns", unknown_id, vectors.astype(VECTOR_DTYPE).tobytes(), model)
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO unknowns ({self.UNKNOWN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                             (unknown_id, created_at, last_seen, len(vectors), sealed.key_version, sealed.nonce, sealed.ciphertext, model))

    def bind_legacy_unknowns(self, cipher_for: CipherFor, cipher: RecordCipher, model: str) -> int:
        """Unknowns written before they carried their model: bound to `model` and re-sealed with it, in one
        transaction. Returns how many."""
        with self._lock, self._db:
            rows = self._db.execute(f"SELECT {self.UNKNOWN_COLUMNS} FROM unknowns WHERE model IS NULL").fetchall()
            for r in rows:
                entry = self._unknown(cipher_for, r)
                self.put_unknown(cipher, r[0], entry["vectors"], r[1], r[2], model)
        return len(rows)

    def delete_unknown(self, unknown_id: str) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM unknowns WHERE unknown_id = ?", (unknown_id,))
            n = self._db.changes()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n > 0

    # ---- promotions: an unknown becomes a person (streams/promotion.py) ---------------------------------------
    def begin_promotion(self, unknown_id: str, new_person_id: str) -> str:
        """The person id the unknown's promotion makes: the one an earlier, unfinished attempt chose, else
        `new_person_id` (durable before the person is made, so a retry or a recovery makes the same one)."""
        with self._lock, self._db:
            row = self._db.execute("SELECT person_id FROM promotions WHERE unknown_id = ?", (unknown_id,)).fetchone()
            if row is not None:
                return row[0]
            self._db.execute("INSERT INTO promotions VALUES (?,?,?)", (unknown_id, new_person_id, time.time()))
        return new_person_id

    def pending_promotions(self) -> dict[str, str]:
        """{unknown id: person id} of promotions begun and not finished."""
        with self._lock:
            return dict(self._db.execute("SELECT unknown_id, person_id FROM promotions").fetchall())

    def abandon_promotion(self, unknown_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM promotions WHERE unknown_id = ?", (unknown_id,))

    def finish_promotion(self, keys: EventKeys, unknown_id: str, person_id: str, external_id: str | None) -> int:
        """In one transaction: every event of the unknown names the person, the unknown and its promotion are
        gone. Returns how many events now name the person."""
        with self._lock, self._db:
            relinked = self.relink_events(keys, unknown_id, person_id, external_id)
            self._db.execute("DELETE FROM unknowns WHERE unknown_id = ?", (unknown_id,))
            self._db.execute("DELETE FROM promotions WHERE unknown_id = ?", (unknown_id,))
        self._checkpoint()
        return relinked

    def unknowns_last_seen_before(self, cutoff: float) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT unknown_id FROM unknowns WHERE last_seen < ?", (cutoff,))]

    # ---- webhooks -------------------------------------------------------------------------------------------
    def add_webhook(self, cipher: RecordCipher, url: str, secret: str, kinds: list[str], max_attempts: int) -> str:
        webhook_id = "whk_" + uuid.uuid4().hex[:16]
        sealed = self._seal(cipher, "webhooks", webhook_id, json.dumps({"url": url, "secret": secret}).encode())
        with self._lock:
            self._db.execute("INSERT INTO webhooks VALUES (?,?,?,?,?,?,?)",
                             (webhook_id, time.time(), json.dumps(kinds), max_attempts, sealed.key_version, sealed.nonce, sealed.ciphertext))
        return webhook_id

    def webhooks(self, cipher_for: CipherFor) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM webhooks ORDER BY created_at").fetchall()
        out = []
        for r in rows:
            secret = json.loads(self._open(cipher_for, "webhooks", r[0], r[4], r[5], r[6]))
            out.append({"webhook_id": r[0], "created_at": r[1], "kinds": json.loads(r[2]), "max_attempts": r[3], **secret})
        return out

    def delete_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM deliveries WHERE webhook_id = ?", (webhook_id,))
            self._db.execute("DELETE FROM webhooks WHERE webhook_id = ?", (webhook_id,))
            return self._db.changes() > 0

    def add_delivery(self, webhook_id: str, seq: int) -> str:
        delivery_id = "dlv_" + uuid.uuid4().hex[:16]
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO deliveries VALUES (?,?,?,?,?,?,?,?,?)",
                             (delivery_id, webhook_id, seq, "pending", 0, now, None, None, now))
        return delivery_id

    def due_deliveries(self, now: float, limit: int = 50) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM deliveries WHERE state = 'pending' AND next_attempt_at <= ?"
                                    " ORDER BY next_attempt_at LIMIT ?", (now, limit)).fetchall()
        return [self._delivery(r) for r in rows]

    def update_delivery(self, delivery_id: str, state: str, attempts: int, next_attempt_at: float,
                        last_status: int | None, last_error: str | None) -> None:
        with self._lock:
            self._db.execute("UPDATE deliveries SET state=?, attempts=?, next_attempt_at=?, last_status=?, last_error=?,"
                             " updated_at=? WHERE delivery_id=?",
                             (state, attempts, next_attempt_at, last_status, last_error, time.time(), delivery_id))

    def requeue_dead(self, webhook_id: str, delivery_id: str) -> tuple[str, dict] | None:
        """A dead delivery made pending again, due now, its attempts counted afresh (the webhook's full
        `max_attempts`); a delivery in any other state is left as it is. (state before, delivery now), or None
        when the webhook has no such delivery."""
        now = time.time()
        with self._lock:
            row = self._db.execute("SELECT * FROM deliveries WHERE delivery_id = ? AND webhook_id = ?",
                                   (delivery_id, webhook_id)).fetchone()
            if row is None:
                return None
            before = row[3]
            if before == "dead":
                self._db.execute("UPDATE deliveries SET state='pending', attempts=0, next_attempt_at=?, updated_at=?"
                                 " WHERE delivery_id=?", (now, now, delivery_id))
                row = self._db.execute("SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return before, self._delivery(row)

    def deliveries(self, webhook_id: str, state: str | None = None, limit: int = 100) -> list[dict]:
        sql, args = "SELECT * FROM deliveries WHERE webhook_id = ?", [webhook_id]
        if state:
            sql += " AND state = ?"; args.append(state)  # noqa: E702
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [self._delivery(r) for r in rows]

    @staticmethod
    def _delivery(r) -> dict:
        return {"delivery_id": r[0], "webhook_id": r[1], "seq": r[2], "state": r[3], "attempts": r[4],
                "next_attempt_at": r[5], "last_status": r[6], "last_error": r[7], "updated_at": r[8]}
