"""Zapier end to end: subscribe through the REST Hooks API, a ticket POSTed to the gateway,
a real worker process, local servers playing Zapier's hook receivers (one answering 410)."""

import hashlib
import hmac

import pytest

from gateway.testing import RecordingSink, Reply

ADMIN = "admin-token-1-0123456789abcdef01"
KEY = "zk_" + "k" * 29
SECRET = "zapier-signing-secret"


@pytest.fixture
def gateway(make_client, gateway_worker):
    """The web app in-process and a way to run a burst worker process to completion."""
    config = {"gateway": {"admin_token": ADMIN},
              "delivery": {"allow_private_networks": True, "retry_jitter": 0},
              "sinks": [{"name": "zapier", "type": "zapier", "events": ["ticket.created"], "api_keys": [KEY],
                         "secret": SECRET}]}

    def burst():
        worker = gateway_worker(config, "--burst")
        assert worker.wait() == 0, worker.output()

    return make_client(config), burst


def subscribe(client, url):
    response = client.post("/api/zapier/hooks", json={"hookUrl": url, "event": "ticket.created"},
                           headers={"X-API-Key": KEY})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def create_ticket(client, subject):
    response = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": subject, "message": "Help", "customer_email": "bob@example.com", "priority": "high"}})
    assert response.status_code == 201
    return response.get_json()["ticket"]


def test_subscribe_deliver_then_410_drops_only_that_subscription(gateway):
    client, burst = gateway
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with RecordingSink() as live_zap, RecordingSink(Reply(410, '{"status":"gone"}')) as deleted_zap:
        live = subscribe(client, live_zap.url)
        gone = subscribe(client, deleted_zap.url)
        ticket = create_ticket(client, "Refund please")
        burst()

        [payload] = [r.json() for r in live_zap.requests]
        assert payload["event"] == "ticket.created" and payload["event_id"].startswith("evt_")
        assert payload["ticket_number"] == ticket["ticket_number"] and payload["ticket_id"] == ticket["id"]
        assert (payload["subject"], payload["customer_email"], payload["priority"]) == (
            "Refund please", "bob@example.com", "high")
        request = live_zap.requests[0]
        expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-Webhook-Signature"], expected)
        assert len(deleted_zap.requests) == 1

        hooks = client.get("/api/zapier/hooks", headers={"X-API-Key": KEY}).get_json()["hooks"]
        assert [h["id"] for h in hooks] == [live]
        sink = client.get("/api/sinks", headers=admin).get_json()["sinks"][0]
        assert sink["state"] == "ok"
        by_target = {d["target"]["key"]: d for d in
                     client.get("/api/deliveries?sink=zapier", headers=admin).get_json()["deliveries"]}
        assert by_target[live]["status"] == "delivered"
        assert (by_target[gone]["status"], by_target[gone]["last_status_code"]) == ("failed", 410)

        create_ticket(client, "Second")
        burst()
        assert [r.json()["subject"] for r in live_zap.requests] == ["Refund please", "Second"]
        assert len(deleted_zap.requests) == 1


def test_each_subscription_is_its_own_delivery_with_its_own_retries(gateway):
    client, burst = gateway
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with RecordingSink() as first, RecordingSink(Reply(503, "busy", {"Retry-After": "3600"})) as second:
        subscribe(client, first.url)
        slow = subscribe(client, second.url)
        create_ticket(client, "Fan out")
        burst()
        assert len(first.requests) == 1 and len(second.requests) == 1
        by_target = {d["target"]["key"]: d for d in
                     client.get("/api/deliveries?sink=zapier", headers=admin).get_json()["deliveries"]}
        assert sorted(d["status"] for d in by_target.values()) == ["delivered", "retrying"]
        assert by_target[slow]["status"] == "retrying" and by_target[slow]["next_attempt_at"]
