"""The delivery log: a sink's static headers (they often carry credentials) show by name,
never by value, while the destination still receives them; and ``since`` filters."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway.delivery.delivery_log import parse_since

NOW = datetime(2026, 1, 15, 10, 30, 0, tzinfo=UTC)


def test_static_header_values_are_hidden_in_the_delivery_log(make_client, recording_sink, drain_deliveries):
    sink = recording_sink.sink(name="partner", headers={"X-Partner-Key": "pk-live-credential-123"})
    client = make_client({"delivery": {"allow_private_networks": True}, "sinks": [sink],
                          "gateway": {"admin_token": "admin-token-for-tests-0123456789"}})
    body = {"event": "ticket.create", "data": {"subject": "S", "message": "M", "customer_email": "c@example.com"}}
    assert client.post("/api/webhooks/receive", json=body).status_code == 201

    attempts = drain_deliveries(client.application)

    assert [a["status"] for a in attempts] == ["delivered"]
    assert recording_sink.requests[0].header("X-Partner-Key") == "pk-live-credential-123"
    shown = client.get(f"/api/deliveries/{attempts[0]['delivery_id']}",
                       headers={"Authorization": "Bearer admin-token-for-tests-0123456789"})
    assert shown.status_code == 200
    assert "pk-live-credential-123" not in json.dumps(shown.get_json())
    assert shown.get_json()["delivery"]["attempt_log"][0]["request"]["headers"]["X-Partner-Key"] == "[hidden]"


def test_since_accepts_ages_and_iso_times():
    assert parse_since("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_since("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2026-01-15T10:30:00Z") == NOW
    assert parse_since("2026-01-15T10:30:00") == NOW
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_since("yesterday")
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_since("³m")  # a superscript is no age (int() refuses it: once an unreadable message)
