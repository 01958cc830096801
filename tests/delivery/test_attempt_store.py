"""Attempt records are kept compact in Redis (issue #20: bytes per ticket) and read back
exactly as the engine made them: the delivery API shows each attempt as it did when the
whole record was stored, for the generic webhook (whose body is the event, kept once), a
templated one and Slack (whose bodies are their own, kept), records written the old way
still read, and a body that was the event is never guessed once the event has expired."""

from __future__ import annotations

import json
from typing import Any

import pytest

TOKEN = "admin-token-for-tests-0123456789-attempts"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEMPLATE = '{"title": {{ ticket.subject|tojson }}, "delivery": {{ delivery.id|tojson }}}'
TICKET = {"subject": "Printer \"3F\" on fire", "message": "Smoke from the tray. ünïcode ✓",
          "customer_email": "ana@bigco.com", "customer_name": "Ana Lima", "priority": "high"}


@pytest.fixture
def delivered(make_client: Any, recording_sink: Any, drain_deliveries: Any) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A ticket delivered to a generic webhook, a templated one and Slack (all signed or
    not as users set them up); the API client and each sink's attempt record as the engine
    made it (what the API showed when the record was stored whole)."""
    url = recording_sink.url
    client = make_client({
        "delivery": {"allow_private_networks": True},
        "gateway": {"admin_token": TOKEN},
        "sinks": [
            {"name": "plain", "type": "generic_webhook", "url": url, "events": ["ticket.created"],
             "secret": "plain-signing-secret-value"},
            {"name": "templated", "type": "generic_webhook", "url": url, "events": ["ticket.created"],
             "secret": "templated-signing-secret", "body_template": TEMPLATE},
            {"name": "slack", "type": "slack", "url": f"{url}/services/T000/B000/XXXXSECRETPATH",
             "channel": "#support", "events": ["ticket.created"]},
        ]})
    created = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": TICKET})
    assert created.status_code == 201
    records = drain_deliveries(client.application)
    assert sorted(r["sink"] for r in records) == ["plain", "slack", "templated"]
    assert all(r["status"] == "delivered" for r in records)
    # The view as it was when the record was stored whole: the record through JSON.
    return client, {r["sink"]: json.loads(json.dumps(r)) for r in records}


def attempt_log(client: Any, delivery_id: str) -> list[dict[str, Any]]:
    shown = client.get(f"/api/deliveries/{delivery_id}", headers=AUTH)
    assert shown.status_code == 200
    return shown.get_json()["delivery"]["attempt_log"]


def redis_of(client: Any) -> Any:
    runtime = client.application.extensions["gateway"]
    return runtime.redis, runtime.keys


@pytest.mark.parametrize("sink", ["plain", "templated", "slack"])
def test_the_api_shows_each_attempt_as_the_engine_recorded_it(delivered: Any, sink: str) -> None:
    client, records = delivered
    record = records[sink]
    assert attempt_log(client, record["delivery_id"]) == [record]


def test_only_the_generic_webhooks_body_is_taken_from_the_event(delivered: Any) -> None:
    client, records = delivered
    redis, keys = redis_of(client)
    stored = {sink: redis.lindex(keys.attempts(r["delivery_id"]), 0).decode() for sink, r in records.items()}
    plain_body = records["plain"]["request"]["body"]
    assert json.loads(plain_body)["data"]["ticket"]["subject"] == TICKET["subject"]
    # The event's envelope is kept once, in the event; the delivery's ids once, in its hash.
    assert "Smoke from the tray" not in stored["plain"]
    assert records["plain"]["delivery_id"] not in stored["plain"]
    assert len(stored["plain"]) < len(json.dumps(records["plain"], ensure_ascii=False)) - len(plain_body)
    # A body of the sink's own making is kept as sent.
    for sink in ("templated", "slack"):
        assert json.dumps(records[sink]["request"]["body"], ensure_ascii=False)[1:-1] in stored[sink]


def test_a_record_written_before_the_compact_form_still_reads(delivered: Any) -> None:
    client, records = delivered
    redis, keys = redis_of(client)
    for record in records.values():
        key = keys.attempts(record["delivery_id"])
        old = dict(record, response_excerpt="written the old way")  # not what a new record says
        redis.lset(key, 0, json.dumps(old, separators=(",", ":"), ensure_ascii=False))
        assert attempt_log(client, record["delivery_id"]) == [old]


def test_a_body_that_was_the_event_is_not_shown_once_the_event_expired(delivered: Any) -> None:
    client, records = delivered
    redis, keys = redis_of(client)
    redis.delete(keys.event(records["plain"]["event_id"]))
    for sink, record in records.items():
        shown = attempt_log(client, record["delivery_id"])[0]
        expected = json.loads(json.dumps(record))
        if sink == "plain":
            # Not a body rebuilt from something else: none, with its size as sent.
            expected["request"]["body"] = None
        assert shown == expected
        assert shown["request"]["body_bytes"] == record["request"]["body_bytes"] > 0
