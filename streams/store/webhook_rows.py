"""The `webhooks` table (URL and signing secret sealed) and `deliveries` (each delivery's state, no payload: it
is rebuilt from the event)."""

from __future__ import annotations

import json
import time
import uuid
from typing import NamedTuple

from kms.records import RecordCipher
from streams.store.file import StreamFile, CipherFor
from tenancy.sqlite import columns, placeholders


class WebhookRow(NamedTuple):
    webhook_id: str
    created_at: float
    kinds: str  # JSON list
    max_attempts: int
    key_version: int
    sealed: bytes  # the token (kms/records.py) of {"url", "secret"}


class DeliveryRow(NamedTuple):
    delivery_id: str
    webhook_id: str
    seq: int
    state: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    updated_at: float


_DELIVERIES = f"SELECT {columns(DeliveryRow)} FROM deliveries"


class WebhookRows:
    def __init__(self, file: StreamFile) -> None:
        self.file = file

    def add_webhook(self, cipher: RecordCipher, url: str, secret: str, kinds: list[str], max_attempts: int) -> str:
        webhook_id = "whk_" + uuid.uuid4().hex[:16]
        sealed = self.file.seal(cipher, "webhooks", webhook_id, json.dumps({"url": url, "secret": secret}).encode())
        row = WebhookRow(webhook_id, time.time(), json.dumps(kinds), max_attempts, cipher.key_version, sealed)
        with self.file.lock:
            self.file.db.execute(f"INSERT INTO webhooks ({columns(WebhookRow)}) VALUES ({placeholders(WebhookRow)})", row)
        return webhook_id

    def webhooks(self, cipher_for: CipherFor) -> list[dict]:
        with self.file.lock:
            rows = list(map(WebhookRow._make, self.file.db.execute(f"SELECT {columns(WebhookRow)} FROM webhooks ORDER BY created_at")))
        out = []
        for row in rows:
            secret = json.loads(self.file.open(cipher_for, "webhooks", row.webhook_id, row.sealed))
            out.append({"webhook_id": row.webhook_id, "created_at": row.created_at, "kinds": json.loads(row.kinds),
                        "max_attempts": row.max_attempts, **secret})
        return out

    def delete_webhook(self, webhook_id: str) -> bool:
        with self.file.lock:
            self.file.db.execute("DELETE FROM deliveries WHERE webhook_id = ?", (webhook_id,))
            self.file.db.execute("DELETE FROM webhooks WHERE webhook_id = ?", (webhook_id,))
            return self.file.db.changes() > 0

    def add_delivery(self, webhook_id: str, seq: int) -> str:
        delivery_id = "dlv_" + uuid.uuid4().hex[:16]
        now = time.time()
        with self.file.lock:
            self.file.db.execute(f"INSERT INTO deliveries ({columns(DeliveryRow)}) VALUES ({placeholders(DeliveryRow)})",
                                 DeliveryRow(delivery_id, webhook_id, seq, "pending", 0, now, None, None, now))
        return delivery_id

    def due_deliveries(self, now: float, limit: int = 50) -> list[dict]:
        with self.file.lock:
            rows = self.file.db.execute(f"{_DELIVERIES} WHERE state = 'pending' AND next_attempt_at <= ?"
                                        " ORDER BY next_attempt_at LIMIT ?", (now, limit)).fetchall()
        return [self._delivery(r) for r in rows]

    def update_delivery(self, delivery_id: str, state: str, attempts: int, next_attempt_at: float,
                        last_status: int | None, last_error: str | None) -> None:
        with self.file.lock:
            self.file.db.execute("UPDATE deliveries SET state=?, attempts=?, next_attempt_at=?, last_status=?, last_error=?,"
                             " updated_at=? WHERE delivery_id=?",
                             (state, attempts, next_attempt_at, last_status, last_error, time.time(), delivery_id))

    def requeue_dead(self, webhook_id: str, delivery_id: str) -> tuple[str, dict] | None:
        """A dead delivery made pending again, due now, its attempts counted afresh (the webhook's full
        `max_attempts`); a delivery in any other state is left as it is. (state before, delivery now), or None
        when the webhook has no such delivery."""
        now = time.time()
        with self.file.lock:
            row = self.file.db.execute(f"{_DELIVERIES} WHERE delivery_id = ? AND webhook_id = ?",
                                       (delivery_id, webhook_id)).fetchone()
            if row is None:
                return None
            before = DeliveryRow._make(row).state
            if before == "dead":
                self.file.db.execute("UPDATE deliveries SET state='pending', attempts=0, next_attempt_at=?, updated_at=?"
                                 " WHERE delivery_id=?", (now, now, delivery_id))
                row = self.file.db.execute(f"{_DELIVERIES} WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return before, self._delivery(row)

    def deliveries(self, webhook_id: str, state: str | None = None, limit: int = 100) -> list[dict]:
        sql, args = f"{_DELIVERIES} WHERE webhook_id = ?", [webhook_id]
        if state:
            sql += " AND state = ?"; args.append(state)  # noqa: E702
        with self.file.lock:
            rows = self.file.db.execute(sql + " ORDER BY seq LIMIT ?", [*args, limit]).fetchall()
        return [self._delivery(r) for r in rows]

    @staticmethod
    def _delivery(row: tuple) -> dict:
        return DeliveryRow._make(row)._asdict()
