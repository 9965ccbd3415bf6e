"""Webhook deliveries, signed as Standard Webhooks (https://www.standardwebhooks.com) with its library.

Each new event is POSTed to the tenant's webhooks as JSON `{"delivery_id", "event"}` with

    webhook-id:        the delivery id; the same on every retry of that delivery (receivers de-duplicate on it)
    webhook-timestamp: when this attempt was signed, whole seconds since the epoch
    webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" under the secret>

so any Standard Webhooks verifier checks a delivery, and refuses one whose timestamp is outside its tolerance
(5 minutes in the published libraries): a captured delivery replayed later fails, and within the window the
receiver drops an id it has seen. The signature covers the id and the timestamp, so neither can be refreshed.

Secrets are `whsec_` + base64 of 32 random bytes (the standard's form). Webhooks created before this scheme
hold a text secret (no prefix): their key is that text's UTF-8 bytes, which a verifier takes as
`base64(secret)`; re-creating the webhook gives a standard secret.

Failed attempts are retried with exponential backoff (`streams.webhook_backoff_s`, doubling), then dead-lettered
after the webhook's `max_attempts`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from standardwebhooks import Webhook

from streams.sources import redact_text
from streams.store import StreamStore

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt to deliver `body`."""
    key = secret if secret.startswith(SECRET_PREFIX) else secret.encode()  # older text secrets: their bytes
    timestamp = dt.datetime.fromtimestamp(int(time.time() if now is None else now), dt.timezone.utc)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": Webhook(key).sign(message_id, timestamp, body.decode())}


class WebhookDeliveries:
    """Delivers the due deliveries of every open camera store, from the StreamSupervisor's event loop."""

    def __init__(self, stores: dict[str, StreamStore], event_keys: Callable[[str], Awaitable], cfg) -> None:
        self.stores, self.event_keys, self.cfg = stores, event_keys, cfg  # cfg: securegate.settings.StreamSettings
        self.wake = asyncio.Event()

    async def forever(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=self.cfg.webhook_timeout_s) as client:
            while True:
                try:
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                for tenant_id in list(self.stores):
                    try:
                        await self.deliver_due(client, tenant_id)
                    except Exception:
                        log.exception("webhook deliveries of %s failed", tenant_id)

    async def deliver_due(self, client, tenant_id: str) -> None:
        store = self.stores.get(tenant_id)
        if store is None:
            return
        due = store.due_deliveries(time.time())
        if not due:
            return
        ciphers = await self.event_keys(tenant_id)
        hooks = {w["webhook_id"]: w for w in store.webhooks(ciphers)}

        async def deliver(delivery: dict) -> None:
            hook = hooks.get(delivery["webhook_id"])
            event = store.event(ciphers, delivery["seq"])
            if hook is None or event is None:
                store.update_delivery(delivery["delivery_id"], "dropped", delivery["attempts"], 0, None, "event or webhook deleted")
                return
            body = json.dumps({"delivery_id": delivery["delivery_id"], "event": event}, sort_keys=True).encode()
            attempts = delivery["attempts"] + 1
            status, error = None, None
            try:
                response = await client.post(hook["url"], content=body, headers={
                    "Content-Type": "application/json", **signed_headers(hook["secret"], delivery["delivery_id"], body)})
                status = response.status_code
                if 200 <= status < 300:
                    store.update_delivery(delivery["delivery_id"], "delivered", attempts, 0, status, None)
                    return
                error = f"HTTP {status}"
            except Exception as exc:
                error = redact_text(f"{type(exc).__name__}: {exc}", hook["url"])[:300]
            if attempts >= hook["max_attempts"]:
                store.update_delivery(delivery["delivery_id"], "dead", attempts, 0, status, error)
            else:
                delay = self.cfg.webhook_backoff_s * 2 ** (attempts - 1)
                store.update_delivery(delivery["delivery_id"], "pending", attempts, time.time() + delay, status, error)

        await asyncio.gather(*(deliver(d) for d in due))
