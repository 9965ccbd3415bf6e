"""A tenant's webhooks: subscribed, listed with their delivery counts, removed; dead letters queued again.

The deliveries themselves are `streams.webhooks.WebhookDeliveries`' (signed as Standard Webhooks, retried, then
dead-lettered).
"""

from __future__ import annotations

from streams.errors import DeliveryNotDead, InvalidStream, StreamNotFound
from streams.files import StreamFiles
from streams.sources import redact_url, source_kind
from streams.webhooks import new_secret


class WebhookSubscriptions:
    """Needs the tenants' files and the streams settings (`webhook_max_attempts`)."""

    def __init__(self, files: StreamFiles, cfg) -> None:
        self.files, self.cfg = files, cfg

    async def add_webhook(self, tenant_id: str, url: str, kinds: list[str], max_attempts: int | None = None) -> dict:
        try:
            http_url = source_kind(url) == "http"
        except ValueError:
            http_url = False
        if not http_url:
            raise InvalidStream("a webhook URL is http:// or https://")
        secret = new_secret()
        ciphers = await self.files.event_keys(tenant_id, read=False)
        max_attempts = max_attempts or self.cfg.webhook_max_attempts
        webhook_id = self.files.store(tenant_id).add_webhook(ciphers.current, url, secret, kinds, max_attempts)
        return {"webhook_id": webhook_id, "url": redact_url(url), "kinds": kinds, "max_attempts": max_attempts, "secret": secret}

    async def list_webhooks(self, tenant_id: str) -> list[dict]:
        ciphers = await self.files.event_keys(tenant_id)
        store = self.files.store(tenant_id)
        out = []
        for w in store.webhooks(ciphers):
            counts: dict[str, int] = {}
            for d in store.deliveries(w["webhook_id"], limit=10**9):
                counts[d["state"]] = counts.get(d["state"], 0) + 1
            out.append({"webhook_id": w["webhook_id"], "url": redact_url(w["url"]), "kinds": w["kinds"],
                        "max_attempts": w["max_attempts"], "created_at": w["created_at"], "deliveries": counts})
        return out

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> None:
        if not self.files.store(tenant_id).delete_webhook(webhook_id):
            raise StreamNotFound(f"webhook {webhook_id} not found")

    async def retry_delivery(self, tenant_id: str, webhook_id: str, delivery_id: str) -> dict:
        """A dead letter queued again with its attempts counted afresh; the delivery loop, which looks for due
        deliveries at least twice a second, sends it with the webhook's current URL and secret."""
        await self.deliveries(tenant_id, webhook_id, "dead", 1)  # the webhook is this tenant's
        found = self.files.store(tenant_id).requeue_dead(webhook_id, delivery_id)
        if found is None:
            raise StreamNotFound(f"delivery {delivery_id} of webhook {webhook_id} not found")
        before, delivery = found
        if before != "dead":
            raise DeliveryNotDead(f"delivery {delivery_id} is {before}, not dead: only a dead letter can be retried")
        return delivery

    async def deliveries(self, tenant_id: str, webhook_id: str, state: str | None, limit: int) -> list[dict]:
        if webhook_id not in {w["webhook_id"] for w in await self.list_webhooks(tenant_id)}:
            raise StreamNotFound(f"webhook {webhook_id} not found")
        return self.files.store(tenant_id).deliveries(webhook_id, state, limit)
