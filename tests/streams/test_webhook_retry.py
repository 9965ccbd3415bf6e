"""Retrying a dead letter (`POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`) through the running
application: a pushed camera's event is dead-lettered by a receiver that answers 500, the receiver recovers,
the retry delivers it; anything not dead is refused with 409 conflict, a delivery of another webhook with 404."""

from __future__ import annotations

import json
import time

import pytest

from securegate.client import ConflictError, NotFoundError, SecureGateClient
from tests.streams.test_cameras import WebhookReceiver, admin, wait_until  # noqa: F401  (admin: a fixture)
from tests.test_corrections import b64, new_tenant


def test_a_dead_letter_is_retried_and_delivered(app, http, admin, identity_photos):  # noqa: F811
    tenant = new_tenant(http, admin, "webhook-retry")
    pid = http.post("/v1/persons", json={"external_id": "kit"}, headers=tenant["auth"]).json()["person_id"]
    photo = identity_photos["kit_harington"][0]
    assert http.post(f"/v1/persons/{pid}/faces", json={"image": b64(photo.read_bytes())}, headers=tenant["auth"]).status_code == 201
    receiver = WebhookReceiver(fail_first=10**6)  # answers 500 until told otherwise
    hook = http.post("/v1/webhooks", json={"url": receiver.url, "max_attempts": 1}, headers=tenant["auth"]).json()
    other = http.post("/v1/webhooks", json={"url": receiver.url, "kinds": ["unknown_seen"]}, headers=tenant["auth"]).json()
    stream = http.post("/v1/streams", json={"name": "door"}, headers=tenant["auth"]).json()
    origin = time.time()
    for i in range(6):
        r = http.post(f"/v1/streams/{stream['stream_id']}/frames", params={"ts": origin + i * 0.2}, content=photo.read_bytes(),
                      headers={**tenant["auth"], "Content-Type": "image/jpeg"})
        assert r.status_code == 202, r.text

    def dead():
        return http.get(f"/v1/webhooks/{hook['webhook_id']}/deliveries", params={"state": "dead"},
                        headers=tenant["auth"]).json()["deliveries"]

    (letter,) = wait_until(dead, 60, "the dead letter")
    assert letter["attempts"] == 1 and letter["last_status"] == 500 and receiver.received == []

    with SecureGateClient(app[1], api_key=tenant["key"]) as client:
        receiver.fail_first = 0
        retried = client.retry_delivery(hook["webhook_id"], letter["delivery_id"])
        assert (retried.delivery_id, retried.attempts) == (letter["delivery_id"], 0)
        assert retried.state in ("pending", "delivered")
        wait_until(lambda: receiver.received, 10, "the retried delivery")
        (headers, body) = receiver.received[0]
        assert json.loads(body)["delivery_id"] == letter["delivery_id"] and json.loads(body)["event"]["person_id"] == pid
        delivered = wait_until(lambda: [d for d in client.webhook_deliveries(hook["webhook_id"]).deliveries if d.state == "delivered"],
                               10, "the delivery's state")
        assert [(d.delivery_id, d.attempts, d.last_status) for d in delivered] == [(letter["delivery_id"], 1, 204)]

        with pytest.raises(ConflictError) as refused:
            client.retry_delivery(hook["webhook_id"], letter["delivery_id"])
        assert refused.value.status == 409 and "not dead" in refused.value.message
        with pytest.raises(NotFoundError):
            client.retry_delivery(other["webhook_id"], letter["delivery_id"])
    assert len(receiver.received) == 1
