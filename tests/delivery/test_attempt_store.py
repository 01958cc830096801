"""Attempt records are kept compact in Redis (issue #20: bytes per ticket) and read back
exactly as the engine made them: the delivery API shows each attempt as it did when the
whole record was stored, for the generic webhook (whose body is the event, kept once), a
templated one and Slack (whose bodies are their own, kept), records written the old way
still read, and a body that was the event is never guessed once the event has expired."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.console import sign_in

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
    # The console says why there is no body to show.
    assert sign_in(client, TOKEN).status_code == 302
    page = client.get(f"/admin/deliveries/{records['plain']['delivery_id']}").text
    assert f"The body ({records['plain']['request']['body_bytes']} bytes) was the event's payload" in page
    assert "Request body as sent" not in page


# -- the stored form itself ----------------------------------------------------------------
FIELDS = {"id": "dlv_0123", "event_id": "evt_4567", "event": "ticket.created", "sink": "crm",
          "target": '{"key":"default","url":"https://crm.example.com/hooks"}'}
EVENT_JSON = '{"id":"evt_4567","event":"ticket.created","timestamp":"2026-01-15T10:30:00.000Z","data":{"n":1}}'
ENVELOPE = '{"event":"ticket.created","timestamp":"2026-01-15T10:30:00.000Z","data":{"n":1}}'


def record(**changes: Any) -> dict[str, Any]:
    base = {"delivery_id": "dlv_0123", "event_id": "evt_4567", "event": "ticket.created", "sink": "crm",
            "target": "default", "attempt": 1, "at": "2026-01-15T10:30:01.000Z", "duration_ms": 3.5,
            "status_code": 200, "outcome": "delivered", "status": "delivered", "error": None,
            "response_excerpt": "ok",
            "request": {"method": "POST", "url": "https://crm.example.com/…",
                        "headers": {"Content-Type": "application/json", "X-Webhook-Delivery": "dlv_0123",
                                    "X-Webhook-Event": "ticket.created", "X-Custom": "[hidden]", "X-Own": "v"},
                        "body": ENVELOPE, "body_bytes": len(ENVELOPE)},
            "next_attempt_at": None, "event_timestamp": "2026-01-15T10:30:00.000Z"}
    return {**base, **changes}


def test_a_stored_record_of_this_form_reads_back_as_it_was_written() -> None:
    from gateway.delivery.attempt_store import pack, unpack

    # Written by this version: what is in Redis must read the same after any later change
    # (the header tables are append-only; this catches a reordering).
    stored = ('[2,1,"2026-01-15T10:30:01.000Z",3.5,200,"delivered","delivered",null,"ok",'
              '["POST","https://crm.example.com/…",[0,2,3,0,2,1,"X-Custom",3,"X-Own","v"],80,80],null,'
              '"2026-01-15T10:30:00.000Z"]')
    assert unpack(stored, FIELDS, EVENT_JSON) == record()
    assert pack(record(), FIELDS, EVENT_JSON) == stored  # and this version still writes it so


class Text(str):
    """A header value that is a str, but not exactly one."""


@pytest.mark.parametrize(("headers", "flat"), [
    ({}, []),
    # The delivery's own id and event name take their codes before the table's values...
    ({"X-Webhook-Delivery": "dlv_0123", "X-Webhook-Event": "ticket.created", "Accept": "application/json"},
     [3, 0, 2, 1, "Accept", 2]),
    # ...even when the delivery's id is one of the table's values.
    ({"Content-Type": "application/json"}, [0, 0]),
    ({"User-Agent": "AI-Support-Autoresponder/1.0", "x-webhook-event": "Ticket.Created"},
     [1, 4, "x-webhook-event", "Ticket.Created"]),
])
def test_headers_are_stored_as_codes_where_the_tables_have_them(headers: dict[str, str], flat: list[Any]) -> None:
    from gateway.delivery.attempt_store import pack, unpack

    fields = {**FIELDS, "id": "application/json"} if headers == {"Content-Type": "application/json"} else FIELDS
    written = record(delivery_id=fields["id"], request={**record()["request"], "headers": headers})
    stored = pack(written, fields, EVENT_JSON)
    assert json.loads(stored)[9][2] == flat
    assert unpack(stored, fields, EVENT_JSON) == written


def test_a_header_value_that_is_not_exactly_a_str_keeps_the_record_whole() -> None:
    from gateway.delivery.attempt_store import pack

    written = record(request={**record()["request"], "headers": {"X-Own": "v", "X-Odd": Text("w")}})
    assert json.loads(pack(written, FIELDS, EVENT_JSON)) == written


@pytest.mark.parametrize(("change", "kept_whole"), [
    ({}, False),
    ({"waited_for": {"delivery_id": "dlv_0000", "status": "delivered"}}, False),
    ({"request": None}, False),
    ({"something_new": 1}, True),  # a field this version does not know
    ({"sink": "another"}, True),  # not what the hash says
    ({"request": {**record()["request"], "headers": {"X-Count": 2}}}, True),  # a number would read as a code
])
def test_every_record_reads_back_exactly(change: dict[str, Any], kept_whole: bool) -> None:
    from gateway.delivery.attempt_store import pack, unpack

    written = record(**change)
    stored = pack(written, FIELDS, EVENT_JSON)
    assert unpack(stored, FIELDS, EVENT_JSON) == written
    assert (json.loads(stored) == written) is kept_whole


@pytest.mark.parametrize("body", [ENVELOPE.replace("1", "[hidden]"), "", ENVELOPE + " ", ENVELOPE[1:]])
def test_a_body_other_than_the_events_envelope_is_kept(body: str) -> None:
    from gateway.delivery.attempt_store import pack, unpack

    written = record(request={**record()["request"], "body": body})
    stored = pack(written, FIELDS, EVENT_JSON)
    assert unpack(stored, FIELDS, EVENT_JSON) == written
    assert unpack(stored, FIELDS, None) == written  # no event needed


def test_the_start_of_a_long_envelope_is_taken_from_the_event_too() -> None:
    from gateway.delivery.attempt_store import pack, unpack

    # The delivery log keeps the first 2 KB of a longer body: that start of the envelope.
    written = record(request={**record()["request"], "body": ENVELOPE[:40], "body_bytes": len(ENVELOPE)})
    stored = pack(written, FIELDS, EVENT_JSON)
    assert ENVELOPE[:40] not in stored
    assert unpack(stored, FIELDS, EVENT_JSON) == written
    gone = unpack(stored, FIELDS, None)
    assert gone["request"]["body"] is None and gone["request"]["body_bytes"] == len(ENVELOPE)
