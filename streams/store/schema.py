"""events.db's tables and indexes, and the forward migrations of older files (run on open)."""

from __future__ import annotations

from kms import records
from streams.event_index import TAG_COLUMNS

TABLES = """
CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, name TEXT NOT NULL, config TEXT NOT NULL,
    created_at REAL NOT NULL, key_version INTEGER NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL, stream_id TEXT NOT NULL, created_at REAL NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, key_version INTEGER NOT NULL, sealed BLOB NOT NULL,
    person_tag BLOB, external_tag BLOB, unknown_tag BLOB);
CREATE TABLE IF NOT EXISTS unknowns (unknown_id TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen REAL NOT NULL,
    samples INTEGER NOT NULL, key_version INTEGER NOT NULL, sealed BLOB NOT NULL, model TEXT);
CREATE TABLE IF NOT EXISTS promotions (unknown_id TEXT PRIMARY KEY, person_id TEXT NOT NULL, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS webhooks (webhook_id TEXT PRIMARY KEY, created_at REAL NOT NULL, kinds TEXT NOT NULL,
    max_attempts INTEGER NOT NULL, key_version INTEGER NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (delivery_id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at REAL NOT NULL, last_status INTEGER,
    last_error TEXT, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""
# Each sealed table's value column in files from before the one sealed form (kms/records.py): there the value was
# stored as its ciphertext with the nonce in its own column; now one token in `sealed`, its key version also in
# the indexed key_version column (the rotation's probes walk that index; SQLite cannot index a blob's bytes as
# an integer without a function of ours).
SEALED_BEFORE_TOKENS = {"streams": "sealed_url", "events": "payload", "unknowns": "vectors", "webhooks": "sealed"}
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



def create_or_migrate(db) -> None:
    """The tables of a new file; an older file gets the columns added since (in one transaction)."""
    with db:
        db.execute(TABLES)
        # Files from before unknowns were bound to their model: the column, NULL (legacy) on their rows.
        columns = {(table, name) for table in SEALED_BEFORE_TOKENS for _, name, *_ in db.execute(f"PRAGMA table_info({table})")}
        if ("unknowns", "model") not in columns:
            db.execute("ALTER TABLE unknowns ADD COLUMN model TEXT")
        # Files from before the events' blind index: the columns, and every event there is to be tagged.
        if ("events", "person_tag") not in columns:
            for column in TAG_COLUMNS.values():
                db.execute(f"ALTER TABLE events ADD COLUMN {column} BLOB")
            last, span = db.execute("SELECT IFNULL(MAX(seq), 0), IFNULL(MAX(last_seen - first_seen), 0) FROM events").fetchone()
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?,?)", [(BACKFILL_NEXT, 0), (BACKFILL_LAST, last), (MAX_SPAN, span)])
        # Files from before the one sealed form: each value re-packed into its token (nothing decrypted).
        db.create_scalar_function("sg_token", records.token, 3, deterministic=True)
        for table, column in SEALED_BEFORE_TOKENS.items():
            if (table, "nonce") in columns:
                rename = f"ALTER TABLE {table} RENAME COLUMN {column} TO sealed;" if column != "sealed" else ""
                db.execute(f"{rename} UPDATE {table} SET sealed = sg_token(key_version, nonce, sealed);"
                           f" ALTER TABLE {table} DROP COLUMN nonce;")
        db.execute(INDEXES)  # after the migrations: a legacy file has its tag columns now
