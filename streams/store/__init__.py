"""A tenant's camera data at rest: `{data_dir}/tenants/{id}/events.db`, beside its faces, removed with them.

Tables: `streams` (camera registrations; the name and the URL, which may hold credentials, sealed), `events` (sightings;
who/what sealed), `unknowns` (anonymous re-identification vectors, sealed like faces, with the model that
embedded them), `promotions` (an unknown being made a person: the person id chosen, so a retried or recovered
promotion makes that one person), `webhooks` (URL and signing secret sealed) and `deliveries` (webhook delivery
state, no payload: it is rebuilt from the event). Every sealed column (`sealed`) holds one token (kms/records.py),
AES-256-GCM under the tenant's content key (KeyService purpose `events`), with associated data binding it to (tenant, table, row id), and an unknown's
vectors also to their model: a row moved elsewhere, or relabelled with another model, does not open.

In clear, only what the queries need and nothing personal: row ids, times, the event kind, the camera id, and
the blind-index tags of whom an event is about (streams/event_index.py), by which `person=` filters, relinks,
attendance and person deletion select their rows and open only those.

Older files migrate forward on open. Files from before the token kept each value's nonce in its own column:
the value is re-packed into its token (nothing decrypted). Unknowns from before the model was bound are bound to the model the
caller names (`bind_legacy_unknowns`: the cameras' model, the only one that ever embedded camera faces).
Events from before the tags get the columns, then their tags (`index_legacy_events`, progress in `meta`).

One writer: the StreamSupervisor deployment (one replica, like registry.db). Opened by `tenancy.sqlite.connect`
(WAL, synchronous=FULL, secure_delete, 0600); every statement under the file's lock (apsw: one thread at a time).

The rooms: `stream_store` (the `StreamStore` facade) opens one `file` (connection, lock, meta, sealing) and hands
it to the table groups: `stream_rows`, `event_rows`, `unknown_rows` (with promotions), `webhook_rows` (with
deliveries) and `resealing` (content-key rotation). `schema` holds the tables and their forward migrations.
Callers import from here.
"""

from streams.store.file import CipherFor, events_path
from streams.store.stream_store import StreamStore
from streams.store.unknown_rows import MAX_UNKNOWN_SAMPLES, VECTOR_DTYPE

__all__ = ["MAX_UNKNOWN_SAMPLES", "VECTOR_DTYPE", "StreamStore", "CipherFor", "events_path"]
