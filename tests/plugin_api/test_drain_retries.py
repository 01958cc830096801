"""``drain_deliveries(..., run_due_retries=True)``: "429, then 200" in one call, without
sleeping, and with the Retry-After the destination asked for on record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from gateway.testing import Reply

TICKET = {"event": "ticket.create", "data": {"subject": "Help", "message": "Please", "customer_email": "a@example.com"}}


@pytest.fixture
def gateway_config(recording_sink: Any) -> dict[str, Any]:
    return {"gateway": {"admin_token": "drain-admin-token-0123456789abcd"},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": [recording_sink.sink("crm", events=["ticket.created"], retry_schedule=[300, 900])]}


def seconds_waited(attempt: dict[str, Any]) -> float:
    return (datetime.fromisoformat(attempt["next_attempt_at"]) - datetime.fromisoformat(attempt["at"])).total_seconds()


def test_429_then_200_runs_the_retry_after_the_asked_time(app: Any, client: Any, recording_sink: Any,
                                                          drain_deliveries: Any) -> None:
    recording_sink.reply(Reply(429, headers={"Retry-After": "120"}))
    client.post("/api/webhooks/receive", json=TICKET)

    attempts = drain_deliveries(app, run_due_retries=True)

    assert [(a["attempt"], a["outcome"], a["status"]) for a in attempts] == [
        (1, "retry", "retrying"), (2, "delivered", "delivered")]
    assert 119 <= seconds_waited(attempts[0]) < 300  # Retry-After, not the schedule's 300 s
    assert [r.header("webhook-id") for r in recording_sink.requests] == [None, None]  # no secret: unsigned
    assert len({r.header("X-Webhook-Delivery") for r in recording_sink.requests}) == 1


def test_by_default_a_retry_stays_scheduled(app: Any, client: Any, recording_sink: Any,
                                            drain_deliveries: Any) -> None:
    recording_sink.reply(503)
    client.post("/api/webhooks/receive", json=TICKET)

    assert [a["status"] for a in drain_deliveries(app)] == ["retrying"]
    assert drain_deliveries(app) == []
    assert len(recording_sink.requests) == 1


def test_a_destination_that_never_recovers_ends_with_the_schedule(app: Any, client: Any, recording_sink: Any,
                                                                  drain_deliveries: Any) -> None:
    recording_sink.default = Reply(500)
    client.post("/api/webhooks/receive", json=TICKET)

    attempts = drain_deliveries(app, run_due_retries=True)

    assert [a["outcome"] for a in attempts] == ["retry", "retry", "exhausted"]
    first_wait, second_wait = (seconds_waited(a) for a in attempts[:2])
    assert 300 <= first_wait < 900 <= second_wait  # the schedule, slot by slot (no jitter)
    assert attempts[-1]["status"] == "failed"


def test_a_replay_or_a_newer_retry_is_not_run_twice(app: Any, client: Any, recording_sink: Any,
                                                    drain_deliveries: Any) -> None:
    recording_sink.reply(503)
    client.post("/api/webhooks/receive", json=TICKET)
    [first] = drain_deliveries(app)
    # The admin replays the delivery before its retry is due: the scheduled retry is stale.
    replayed = client.post(f"/api/deliveries/{first['delivery_id']}/replay",
                           headers={"Authorization": "Bearer drain-admin-token-0123456789abcd"})
    assert replayed.status_code in (200, 202)

    attempts = drain_deliveries(app, run_due_retries=True)

    assert [a["outcome"] for a in attempts] == ["delivered"]
    assert len(recording_sink.requests) == 2
