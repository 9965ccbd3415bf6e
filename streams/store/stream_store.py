"""`StreamStore`: one tenant's events.db, the facade its callers use (the StreamService's collaborators, the
webhook deliveries, promotions, attendance). It opens the file and hands it to the table groups that do the work."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kms.records import RecordCipher
from streams.event_index import EventKeys
from streams.store.event_rows import EventRows
from streams.store.file import StreamFile, CipherFor
from streams.store.resealing import Resealing
from streams.store.stream_rows import StreamRows
from streams.store.unknown_rows import UnknownRows
from streams.store.webhook_rows import WebhookRows


class StreamStore:
    def __init__(self, path: str | Path, tenant_id: str) -> None:
        self.file = StreamFile(path, tenant_id)
        self.path, self.tenant_id = self.file.path, tenant_id
        self.resealing = Resealing(self.file)
        self.stream_rows = StreamRows(self.file)
        self.event_rows = EventRows(self.file)
        self.unknown_rows = UnknownRows(self.file, self.event_rows)
        self.webhook_rows = WebhookRows(self.file)

    def close(self) -> None:
        self.file.close()

    def transaction(self):
        """One transaction of the file's connection, as a context manager: benchmarks/events.py batches its writes
        in it (10K events per commit, not one fsync each)."""
        return self.file.db

    def checkpoint(self) -> None:
        self.file.checkpoint()

    # ---- content-key rotation ------------------------------------------------------------------------------
    def key_versions(self) -> set[int]:
        return self.resealing.key_versions()

    def reseal(self, keys: EventKeys) -> int:
        return self.resealing.reseal(keys)

    # ---- streams -------------------------------------------------------------------------------------------
    def add_stream(self, cipher: RecordCipher, name: str, url: str, config: dict) -> str:
        return self.stream_rows.add_stream(cipher, name, url, config)

    def put_stream(self, cipher: RecordCipher, stream_id: str, name: str, url: str, config: dict, created_at: float) -> None:
        self.stream_rows.put_stream(cipher, stream_id, name, url, config, created_at)

    def streams(self, cipher_for: CipherFor) -> list[dict]:
        return self.stream_rows.streams(cipher_for)

    def delete_stream(self, stream_id: str) -> bool:
        return self.stream_rows.delete_stream(stream_id)

    # ---- events --------------------------------------------------------------------------------------------
    def add_event(self, keys: EventKeys, kind: str, stream_id: str, first_seen: float, last_seen: float, payload: dict) -> dict:
        return self.event_rows.add_event(keys, kind, stream_id, first_seen, last_seen, payload)

    def update_event(self, keys: EventKeys, seq: int, last_seen: float, changes: dict) -> dict | None:
        return self.event_rows.update_event(keys, seq, last_seen, changes)

    def events(self, keys: EventKeys, since: int = 0, limit: int = 100, stream_id: str | None = None,
               kind: str | None = None, person: str | None = None) -> list[dict]:
        return self.event_rows.events(keys, since, limit, stream_id, kind, person)

    def person_sightings(self, keys: EventKeys, day_start: float, day_end: float) -> list[tuple]:
        return self.event_rows.person_sightings(keys, day_start, day_end)

    def payload(self, keys: EventKeys, seq: int) -> dict:
        return self.event_rows.payload(keys, seq)

    def delete_events_of(self, keys: EventKeys, key: str, value: str) -> int:
        return self.event_rows.delete_events_of(keys, key, value)

    def index_legacy_events(self, keys: EventKeys, batch: int | None = 2000) -> bool:
        return self.event_rows.index_legacy_events(keys, batch)

    def relink_events(self, keys: EventKeys, old_id: str, person_id: str, external_id: str | None) -> int:
        return self.event_rows.relink_events(keys, old_id, person_id, external_id)

    def delete_events_before(self, cutoff: float) -> int:
        return self.event_rows.delete_events_before(cutoff)

    def event(self, keys: EventKeys, seq: int) -> dict | None:
        return self.event_rows.event(keys, seq)

    # ---- unknowns and promotions ---------------------------------------------------------------------------
    def unknowns(self, cipher_for: CipherFor) -> dict[str, dict]:
        return self.unknown_rows.unknowns(cipher_for)

    def put_unknown(self, cipher: RecordCipher, unknown_id: str, vectors: np.ndarray, created_at: float, last_seen: float,
                    model: str) -> None:
        self.unknown_rows.put_unknown(cipher, unknown_id, vectors, created_at, last_seen, model)

    def bind_legacy_unknowns(self, cipher_for: CipherFor, cipher: RecordCipher, model: str) -> int:
        return self.unknown_rows.bind_legacy_unknowns(cipher_for, cipher, model)

    def delete_unknown(self, unknown_id: str) -> bool:
        return self.unknown_rows.delete_unknown(unknown_id)

    def begin_promotion(self, unknown_id: str, new_person_id: str) -> str:
        return self.unknown_rows.begin_promotion(unknown_id, new_person_id)

    def pending_promotions(self) -> dict[str, str]:
        return self.unknown_rows.pending_promotions()

    def abandon_promotion(self, unknown_id: str) -> None:
        self.unknown_rows.abandon_promotion(unknown_id)

    def finish_promotion(self, keys: EventKeys, unknown_id: str, person_id: str, external_id: str | None) -> int:
        return self.unknown_rows.finish_promotion(keys, unknown_id, person_id, external_id)

    def unknowns_last_seen_before(self, cutoff: float) -> list[str]:
        return self.unknown_rows.unknowns_last_seen_before(cutoff)

    # ---- webhooks and deliveries ---------------------------------------------------------------------------
    def add_webhook(self, cipher: RecordCipher, url: str, secret: str, kinds: list[str], max_attempts: int) -> str:
        return self.webhook_rows.add_webhook(cipher, url, secret, kinds, max_attempts)

    def webhooks(self, cipher_for: CipherFor) -> list[dict]:
        return self.webhook_rows.webhooks(cipher_for)

    def delete_webhook(self, webhook_id: str) -> bool:
        return self.webhook_rows.delete_webhook(webhook_id)

    def add_delivery(self, webhook_id: str, seq: int) -> str:
        return self.webhook_rows.add_delivery(webhook_id, seq)

    def due_deliveries(self, now: float, limit: int = 50) -> list[dict]:
        return self.webhook_rows.due_deliveries(now, limit)

    def update_delivery(self, delivery_id: str, state: str, attempts: int, next_attempt_at: float,
                        last_status: int | None, last_error: str | None) -> None:
        self.webhook_rows.update_delivery(delivery_id, state, attempts, next_attempt_at, last_status, last_error)

    def requeue_dead(self, webhook_id: str, delivery_id: str) -> tuple[str, dict] | None:
        return self.webhook_rows.requeue_dead(webhook_id, delivery_id)

    def deliveries(self, webhook_id: str, state: str | None = None, limit: int = 100) -> list[dict]:
        return self.webhook_rows.deliveries(webhook_id, state, limit)
