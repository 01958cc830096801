"""Idempotency on the receive endpoint: a repeated Idempotency-Key (else webhook-id) with the
same body gets 200 with the original ticket and ``Idempotent-Replayed: true``; nothing new
is created or published. With another body: 422 ``idempotency_key_reused``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from support.plugins import EventRecorder

URL = "/api/webhooks/receive"
BODY = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Really.",
                                           "customer_email": "ops@example.com"}}


def stored_counts(redis_client: Any) -> tuple[int, int]:
    return redis_client.zcard("gw:tickets"), redis_client.zcard("gw:events")


def test_idempotency_key_replays_the_original_ticket(make_client: Any, redis_client: Any) -> None:
    observer = EventRecorder()
    client = make_client(plugins=[observer])
    first = client.post(URL, json=BODY, headers={"Idempotency-Key": "order-7"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers

    again = client.post(URL, json=BODY, headers={"Idempotency-Key": "order-7"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()

    assert stored_counts(redis_client) == (1, 1)
    assert observer.names == ["ticket.created"]

    other = client.post(URL, json=BODY, headers={"Idempotency-Key": "order-8"})
    assert other.status_code == 201
    assert other.get_json()["ticket"]["ticket_number"].endswith("-002")
    assert stored_counts(redis_client) == (2, 2)


def test_a_key_reused_with_another_body_gets_422_and_nothing_of_the_original(make_client: Any,
                                                                              redis_client: Any) -> None:
    # Issue 13: unsigned, anyone who guessed "order-1001" got the first sender's ticket back
    # (subject, message, customer email) with a 200.
    client = make_client()
    assert client.post(URL, json=BODY, headers={"Idempotency-Key": "order-1001"}).status_code == 201
    probe = {**BODY, "data": {**BODY["data"], "subject": "Anything", "customer_email": "eve@example.com"}}

    response = client.post(URL, json=probe, headers={"Idempotency-Key": "order-1001"})

    assert response.status_code == 422
    assert response.get_json()["error"] == "idempotency_key_reused"
    assert "Idempotent-Replayed" not in response.headers
    for original in ("Printer on fire", "Really.", "ops@example.com", "TKT-"):
        assert original not in response.text
    assert stored_counts(redis_client) == (1, 1)
    # The original sender's retry (the same bytes) still gets its ticket.
    assert client.post(URL, json=BODY, headers={"Idempotency-Key": "order-1001"}).status_code == 200


def test_a_key_stored_before_bodies_were_hashed_still_replays(make_client: Any, redis_client: Any) -> None:
    # Keys written by the previous release (within idempotency_ttl of an upgrade) hold just the id.
    client = make_client()
    first = client.post(URL, json=BODY, headers={"Idempotency-Key": "order-old"}).get_json()
    [key] = redis_client.keys("gw:idem:*")
    redis_client.set(key, first["ticket"]["id"])
    again = client.post(URL, json=BODY, headers={"Idempotency-Key": "order-old"})
    assert again.status_code == 200 and again.get_json() == first


def test_webhook_id_is_the_key_when_there_is_no_idempotency_key(make_client: Any, redis_client: Any) -> None:
    secret = "whsec_" + base64.b64encode(b"standard-secret-bytes").decode()
    client = make_client({"gateway": {"secret": secret}})
    raw = json.dumps(BODY).encode()

    def headers(msg_id: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        key = base64.b64decode(secret.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
        return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + base64.b64encode(mac).decode()}

    first = client.post(URL, data=raw, headers=headers("msg_2ab"))
    assert first.status_code == 201
    # A sender's retry: same webhook-id, fresh timestamp and signature.
    retry = client.post(URL, data=raw, headers=headers("msg_2ab"))
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json()["ticket"]["id"] == first.get_json()["ticket"]["id"]
    assert stored_counts(redis_client) == (1, 1)
    assert client.post(URL, data=raw, headers=headers("msg_other")).status_code == 201


def test_a_signed_webhook_id_is_the_key_whatever_idempotency_key_says(make_client: Any,
                                                                       redis_client: Any) -> None:
    # Issue 13: a captured Standard Webhooks request, replayed within the signature's
    # tolerance with a fresh (unsigned) Idempotency-Key, created a second ticket.
    secret = "whsec_" + base64.b64encode(b"standard-secret-bytes").decode()
    client = make_client({"gateway": {"secret": secret}})
    raw = json.dumps(BODY).encode()
    timestamp = str(int(time.time()))
    mac = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), f"msg_9.{timestamp}.".encode() + raw,
                   hashlib.sha256).digest()
    captured = {"Content-Type": "application/json", "webhook-id": "msg_9", "webhook-timestamp": timestamp,
                "webhook-signature": "v1," + base64.b64encode(mac).decode()}
    first = client.post(URL, data=raw, headers=captured)
    assert first.status_code == 201

    replayed = client.post(URL, data=raw, headers={**captured, "Idempotency-Key": "fresh-key-1"})

    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json() == first.get_json()
    assert stored_counts(redis_client) == (1, 1)


def test_without_a_key_every_request_creates_a_ticket(make_client: Any, redis_client: Any) -> None:
    client = make_client()
    numbers = {client.post(URL, json=BODY).get_json()["ticket"]["ticket_number"] for _ in range(3)}
    assert len(numbers) == 3
    assert stored_counts(redis_client) == (3, 3)


def test_idempotency_key_expires_after_the_ttl(make_client: Any, redis_client: Any) -> None:
    client = make_client({"gateway": {"idempotency_ttl": 60}})
    assert client.post(URL, json=BODY, headers={"Idempotency-Key": "short"}).status_code == 201
    ttls = [redis_client.ttl(k) for k in redis_client.keys("gw:idem:*")]
    assert len(ttls) == 1 and 0 < ttls[0] <= 60
    redis_client.delete(*redis_client.keys("gw:idem:*"))  # what expiry does
    assert client.post(URL, json=BODY, headers={"Idempotency-Key": "short"}).status_code == 201


def test_overlong_idempotency_key_is_400(make_client: Any, redis_client: Any) -> None:
    response = make_client().post(URL, json=BODY, headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert response.get_json()["error"] == "idempotency_key_invalid"
    assert "1 to 255 characters" in response.get_json()["message"]
    assert stored_counts(redis_client) == (0, 0)


@pytest.mark.parametrize("length", [1, 255])
def test_an_idempotency_key_of_1_to_255_characters_is_accepted_and_replays(make_client: Any, redis_client: Any,
                                                                           length: int) -> None:
    client = make_client()
    key = {"Idempotency-Key": "k" * length}
    first = client.post(URL, json=BODY, headers=key)
    assert first.status_code == 201, first.get_json()
    again = client.post(URL, json=BODY, headers=key)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    assert stored_counts(redis_client) == (1, 1)


def test_an_empty_webhook_id_is_400_not_an_empty_key(make_client: Any, redis_client: Any) -> None:
    # An empty Idempotency-Key header counts as none, but the Standard Webhooks id it falls
    # back to is a key when present: an empty one would make every such request "the same".
    response = make_client().post(URL, json=BODY, headers={"webhook-id": ""})
    assert response.status_code == 400
    assert response.get_json()["error"] == "idempotency_key_invalid"
    assert stored_counts(redis_client) == (0, 0)
