"""A tenant's camera data at rest: `{data_dir}/tenants/{id}/events.db`, beside its faces, removed with them.

Tables: `streams` (camera registrations; the name and the URL, which may hold credentials, sealed), `events` (sightings;
who/what sealed), `unknowns` (anonymous re-identification vectors, sealed like faces, with the model that
embedded them), `promotions` (an unknown being made a person: the person id chosen, so a retried or recovered
promotion makes that one person), `webhooks` (URL and signing secret sealed) and `deliveries` (webhook delivery
state, no payload: it is rebuilt from the event). Every sealed column is AES-256-GCM under the tenant's content
key (KeyService purpose `events`), with associated data binding it to (tenant, table, row id), and an unknown's
vectors also to their model: a row moved elsewhere, or relabelled with another model, does not open.

Unknowns written before the model was bound (no `model`, the old associated data) are read as they are and
bound to the model the caller names (`bind_legacy_unknowns`: the cameras' embedding model, the only one that
ever embedded camera faces), re-sealed in one transaction.

In clear, only what the queries need and nothing personal: row ids, times, the event kind and the camera
id. Which person an event is about is inside the sealed payload, so `person=` filters and person deletion
decrypt and scan (events are few per person-day; the scan costs ~1 µs per event).

One writer: the StreamRouter deployment (keep it at one replica; like registry.db). Opened by
`tenancy.sqlite.connect` (WAL, synchronous=FULL, secure_delete so deleted events leave no trace in the file;
0600), every statement under `_lock` (an apsw connection is for one thread at a time).
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


SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL,
    created_at REAL NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, sealed_url BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL, stream_id TEXT NOT NULL, created_at REAL NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_first_seen ON events(first_seen);
CREATE TABLE IF NOT EXISTS unknowns (unknown_id TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen REAL NOT NULL,
    samples INTEGER NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, vectors BLOB NOT NULL, model TEXT);
CREATE TABLE IF NOT EXISTS promotions (unknown_id TEXT PRIMARY KEY, person_id TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (webhook_id TEXT PRIMARY KEY, created_at REAL NOT NULL, kinds TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at REAL NOT NULL, last_status INTEGER,
    last_error TEXT, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_at);
"""


class CameraStore:
    def __init__(self, path: str | Path, tenant_id: str) -> None:
        self.path, self.tenant_id = Path(path), tenant_id
        self._lock = threading.RLock()
        self._db = sqlite.connect(self.path)
        with self._db:
            self._db.execute(SCHEMA)
            # Files from before unknowns were bound to their model: the column, NULL (legacy) on their rows.
            if "model" not in {row[1] for row in self._db.execute("PRAGMA table_info(unknowns)")}:
                self._db.execute("ALTER TABLE unknowns ADD COLUMN model TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---- sealing ------------------------------------------------------------------------------------------
    def _seal(self, cipher: RecordCipher, table: str, row_id: str, plaintext: bytes, *bound: str) -> SealedRecord:
        return cipher.seal(plaintext, aad=_aad(self.tenant_id, table, row_id, *bound))

    def _open(self, cipher_for: CipherFor, table: str, row_id: str, version: int, nonce: bytes, ciphertext: bytes,
              *bound: str) -> bytes:
        return cipher_for(version).open(SealedRecord(nonce, ciphertext, version), aad=_aad(self.tenant_id, table, row_id, *bound))

    def key_versions(self) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT key_version FROM streams UNION SELECT key_version FROM events"
                                    " UNION SELECT key_version FROM unknowns UNION SELECT key_version FROM webhooks").fetchall()
        return {r[0] for r in rows}

    # (table, id column, sealed column): every sealed value, for re-sealing under a new key version.
    SEALED = (("streams", "stream_id", "sealed_url"), ("events", "event_id", "payload"),
              ("unknowns", "unknown_id", "vectors"), ("webhooks", "webhook_id", "sealed"))

    def reseal(self, cipher_for: CipherFor, current: RecordCipher) -> int:
        """Re-seal every value sealed under another key version with `current` (after a content-key
        rotation, before the old version is retired). Returns how many values were re-sealed."""
        done = self._seal_legacy_stream_names(cipher_for, current)
        for table, id_column, column in self.SEALED:
            bound = "model" if table == "unknowns" else "NULL"  # what else the value's associated data names
            with self._lock:
                rows = self._db.execute(f"SELECT {id_column}, key_version, nonce, {column}, {bound} FROM {table} WHERE key_version != ?",
                                        (current.key_version,)).fetchall()
            for row_id, version, nonce, ciphertext, model in rows:
                also = () if model is None else (model,)
                sealed = self._seal(current, table, row_id,
                                    self._open(cipher_for, table, row_id, version, nonce, ciphertext, *also), *also)
                with self._lock:
                    self._db.execute(f"UPDATE {table} SET key_version = ?, nonce = ?, {column} = ? WHERE {id_column} = ? AND key_version = ?",
                                     (sealed.key_version, sealed.nonce, sealed.ciphertext, row_id, version))
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
    def add_event(self, cipher: RecordCipher, kind: str, stream_id: str, first_seen: float, last_seen: float, payload: dict) -> dict:
        event_id = "evt_" + uuid.uuid4().hex[:20]
        created = time.time()
        sealed = self._seal(cipher, "events", event_id, json.dumps(payload).encode())
        with self._lock:
            self._db.execute(
                "INSERT INTO events (event_id, kind, stream_id, created_at, first_seen, last_seen, key_version, nonce, payload)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (event_id, kind, stream_id, created, first_seen, last_seen, sealed.key_version, sealed.nonce, sealed.ciphertext))
            seq = self._db.last_insert_rowid()
        return self._view(seq, event_id, kind, stream_id, created, first_seen, last_seen, payload)

    def update_event(self, cipher: RecordCipher, cipher_for: CipherFor, seq: int, last_seen: float, changes: dict) -> dict | None:
        """Extend an event (a track went on, or the same person came back within the cooldown)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return None
            payload = json.loads(self._open(cipher_for, "events", row[1], row[7], row[8], row[9]))
            payload.update(changes)
            last_seen = max(last_seen, row[6])
            sealed = self._seal(cipher, "events", row[1], json.dumps(payload).encode())
            self._db.execute("UPDATE events SET last_seen = ?, key_version = ?, nonce = ?, payload = ? WHERE seq = ?",
                             (last_seen, sealed.key_version, sealed.nonce, sealed.ciphertext, seq))
        return self._view(seq, row[1], row[2], row[3], row[4], row[5], last_seen, payload)

    def events(self, cipher_for: CipherFor, since: int = 0, limit: int = 100, stream_id: str | None = None,
               kind: str | None = None, person: str | None = None, day_start: float | None = None,
               day_end: float | None = None) -> list[dict]:
        """Events after sequence number `since`, oldest first, filtered. `person` is a person id, an external
        id or an anonymous id (matched inside the sealed payload)."""
        where, args = ["seq > ?"], [since]
        if stream_id:
            where.append("stream_id = ?"); args.append(stream_id)  # noqa: E702
        if kind:
            where.append("kind = ?"); args.append(kind)  # noqa: E702
        if day_start is not None:
            where.append("last_seen >= ? AND first_seen < ?"); args += [day_start, day_end]  # noqa: E702
        out: list[dict] = []
        cursor = since
        while len(out) < limit:
            with self._lock:
                rows = self._db.execute(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                                        [cursor, *args[1:], 500]).fetchall()
            if not rows:
                break
            for r in rows:
                payload = json.loads(self._open(cipher_for, "events", r[1], r[7], r[8], r[9]))
                if person is None or person in (payload.get("person_id"), payload.get("external_id"), payload.get("unknown_id")):
                    out.append(self._view(r[0], r[1], r[2], r[3], r[4], r[5], r[6], payload))
                    if len(out) == limit:
                        break
            cursor = rows[-1][0]
        return out

    def delete_events_of(self, cipher_for: CipherFor, key: str, value: str) -> int:
        """Delete every event whose payload has `key` == value (a person's or an unknown's events)."""
        doomed = [e["seq"] for e in self.events(cipher_for, 0, 10**9) if e.get(key) == value]
        with self._lock:
            self._db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in doomed])
            self._db.executemany("DELETE FROM deliveries WHERE seq = ?", [(s,) for s in doomed])
            if doomed:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(doomed)

    def delete_events_before(self, cutoff: float) -> int:
        with self._lock:
            self._db.execute("DELETE FROM events WHERE last_seen < ?", (cutoff,))
            n = self._db.changes()
            if n:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def event(self, cipher_for: CipherFor, seq: int) -> dict | None:
        found = self.events(cipher_for, seq - 1, 1)
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

    def finish_promotion(self, cipher: RecordCipher, cipher_for: CipherFor, unknown_id: str, person_id: str,
                         external_id: str | None) -> int:
        """In one transaction: every event of the unknown names the person, the unknown and its promotion are
        gone. Returns how many events now name the person."""
        with self._lock, self._db:
            seqs = [e["seq"] for e in self.events(cipher_for, 0, 10**9, person=unknown_id)]
            for seq in seqs:
                self.update_event(cipher, cipher_for, seq, 0.0, {"person_id": person_id, "external_id": external_id})
            self._db.execute("DELETE FROM unknowns WHERE unknown_id = ?", (unknown_id,))
            self._db.execute("DELETE FROM promotions WHERE unknown_id = ?", (unknown_id,))
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # secure_delete: the vectors' pages leave the WAL too
        return len(seqs)

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
