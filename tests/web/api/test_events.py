"""``POST /api/events`` (the host application publishes catalogued events),
``GET /api/event-types`` (the public catalogue) and the health checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.plugins import EnvelopeSinkPlugin

from gateway.publish.builtin_events import BUILTIN_EVENT_TYPES, SYSTEM_EVENT_TYPES

TOKEN = "events-admin-token-0123456789abc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TICKET = {"id": "t-1", "ticket_number": "TKT-2026-001", "subject": "Refund", "status": "open",
          "customer_email": "a@example.com"}
AI_RESPONSE = {"id": "air_1", "content": "We refunded you."}


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}, "sinks": [
        {"name": "all", "type": "envelope", "url": "http://127.0.0.1:9/all", "events": ["*"]},
        {"name": "ai", "type": "envelope", "url": "http://127.0.0.1:9/ai", "events": ["ai.response.rejected"]}]},
        plugins=[EnvelopeSinkPlugin()])


def deliveries(redis_client: Any) -> list[tuple[str, str]]:
    rows = [redis_client.hgetall(f"gw:delivery:{d.decode()}") for d in redis_client.zrange("gw:deliveries", 0, -1)]
    return sorted((r[b"event"].decode(), r[b"sink"].decode()) for r in rows)


def test_publish_stores_the_event_with_its_deliveries(client: Any, redis_client: Any) -> None:
    data = {"ticket": TICKET, "ai_response": AI_RESPONSE, "reason": "Wrong order number"}
    response = client.post("/api/events", json={"event": "ai.response.rejected", "data": data}, headers=AUTH)
    assert response.status_code == 202
    event_id = response.get_json()["event_id"]
    stored = json.loads(redis_client.get(f"gw:event:{event_id}"))
    assert stored["event"] == "ai.response.rejected"
    assert stored["data"]["reason"] == "Wrong order number"
    assert stored["data"]["ticket"]["ticket_number"] == "TKT-2026-001"
    assert stored["timestamp"].endswith("Z")
    assert deliveries(redis_client) == [("ai.response.rejected", "ai"), ("ai.response.rejected", "all")]


def test_every_catalogued_sample_can_be_published(client: Any, redis_client: Any) -> None:
    for event_type in BUILTIN_EVENT_TYPES:
        response = client.post("/api/events", json={"event": event_type.name, "data": event_type.sample},
                               headers=AUTH)
        assert response.status_code == 202, (event_type.name, response.get_json())
    assert redis_client.zcard("gw:events") == len(BUILTIN_EVENT_TYPES) == 10


def test_unknown_event_is_400(client: Any, redis_client: Any) -> None:
    response = client.post("/api/events", json={"event": "ticket.deleted", "data": {}}, headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"] == "unknown_event"
    assert response.get_json()["fields"] == {"event": ["Unknown event."]}
    assert redis_client.zcard("gw:events") == 0


@pytest.mark.parametrize(("event", "data", "fields"), [
    ("ticket.updated", {}, {"data.ticket"}),
    ("ticket.updated", {"ticket": {**TICKET, "status": "sleeping"}}, {"data.ticket.status"}),
    ("ai.response.rejected", {"ticket": TICKET, "ai_response": AI_RESPONSE}, {"data.reason"}),
    ("feedback.received", {"feedback": {"id": "f", "ticket_id": "t", "rating": 9}}, {"data.feedback.rating"}),
    ("conversation.added", {"conversation": {"id": "c"}, "extra": 1},
     {"data.conversation.ticket_id", "data.conversation.author", "data.conversation.message", "data.extra"}),
])
def test_schema_errors_are_422_with_fields(client: Any, redis_client: Any, event: str, data: dict[str, Any],
                                           fields: set[str]) -> None:
    response = client.post("/api/events", json={"event": event, "data": data}, headers=AUTH)
    assert response.status_code == 422
    doc = response.get_json()
    assert doc["error"] == "validation_failed"
    assert set(doc["fields"]) == fields
    assert redis_client.zcard("gw:events") == 0


def test_nested_field_errors_are_one_message_list_per_dotted_path(client: Any) -> None:
    bad = {"ticket": {**TICKET, "customer_email": "nope", "priority": "asap"}}
    doc = client.post("/api/events", json={"event": "ticket.escalated", "data": bad}, headers=AUTH).get_json()
    assert doc["fields"] == {"data.ticket.customer_email": ["Not a valid email address."],
                             "data.ticket.priority": ["Must be one of: low, medium, high, urgent."]}


def test_bad_bodies(client: Any) -> None:
    assert client.post("/api/events", data="x", headers=AUTH, content_type="text/plain").status_code == 415
    broken = client.post("/api/events", data="{", headers=AUTH, content_type="application/json")
    assert broken.status_code == 400 and broken.get_json()["error"] == "malformed_json"
    missing = client.post("/api/events", json={"event": "ticket.updated"}, headers=AUTH)
    assert missing.status_code == 422 and missing.get_json()["fields"] == {"data": ["Missing data for required field."]}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_nan_and_infinity_are_refused_at_input(client: Any, redis_client: Any, number: str) -> None:
    # Issue 13: {"rating": NaN} was accepted and sent on as invalid JSON to every sink.
    body = ('{"event": "feedback.received", "data": {"feedback": {"id": "f", "ticket_id": "t", '
            f'"rating": {number}' + "}}}")
    response = client.post("/api/events", data=body, headers=AUTH, content_type="application/json")
    assert response.status_code == 422
    assert list(response.get_json()["fields"]) == ["data.feedback.rating"]
    assert redis_client.zcard("gw:events") == 0


def test_an_event_is_never_serialised_with_nan() -> None:
    from gateway.events import Event

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        Event.new("feedback.received", {"feedback": {"rating": float("nan")}}).envelope_bytes()


def test_nul_in_ticket_text_is_refused(client: Any, redis_client: Any) -> None:
    body = {"event": "ticket.updated", "data": {"ticket": {**TICKET, "subject": "Re\u0000fund"}}}
    response = client.post("/api/events", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"data.ticket.subject": ["NUL characters (\\u0000) are not allowed."]}
    assert redis_client.zcard("gw:events") == 0


def test_idempotency_key(client: Any, redis_client: Any) -> None:
    body = {"event": "ticket.updated", "data": {"ticket": TICKET}}
    first = client.post("/api/events", json=body, headers={**AUTH, "Idempotency-Key": "upd-1"})
    assert first.status_code == 202
    again = client.post("/api/events", json=body, headers={**AUTH, "Idempotency-Key": "upd-1"})
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert redis_client.zcard("gw:events") == 1
    assert len(deliveries(redis_client)) == 1
    # The key space is apart from the receive endpoint's: the same key creates a ticket there.
    ticket = client.post("/api/webhooks/receive", headers={"Idempotency-Key": "upd-1"}, json={
        "event": "ticket.create", "data": {"subject": "s", "message": "m", "customer_email": "c@example.com"}})
    assert ticket.status_code == 201


def test_an_idempotency_key_reused_with_another_body_is_refused(client: Any, redis_client: Any) -> None:
    body = {"event": "ticket.updated", "data": {"ticket": TICKET}}
    assert client.post("/api/events", json=body, headers={**AUTH, "Idempotency-Key": "upd-2"}).status_code == 202
    # The same body in another key order and spacing is the same request.
    respelled = json.dumps({"data": {"ticket": dict(reversed(list(TICKET.items())))}, "event": "ticket.updated"},
                           indent=2)
    same = client.post("/api/events", data=respelled, content_type="application/json",
                       headers={**AUTH, "Idempotency-Key": "upd-2"})
    assert same.status_code == 200
    other = {"event": "ticket.updated", "data": {"ticket": {**TICKET, "status": "closed"}}}
    refused = client.post("/api/events", json=other, headers={**AUTH, "Idempotency-Key": "upd-2"})
    assert refused.status_code == 422
    assert refused.get_json()["error"] == "idempotency_key_reused"
    assert redis_client.zcard("gw:events") == 1


def test_admin_token_required(client: Any) -> None:
    body = {"event": "ticket.updated", "data": {"ticket": TICKET}}
    assert client.post("/api/events", json=body).status_code == 401
    assert client.post("/api/events", json=body, headers={"Authorization": "Bearer wrong-token"}).status_code == 403


def test_event_types_catalogue_is_public(client: Any) -> None:
    doc = client.get("/api/event-types").get_json()
    names = [t["name"] for t in doc["event_types"]]
    assert sorted(names) == sorted(t.name for t in (*BUILTIN_EVENT_TYPES, *SYSTEM_EVENT_TYPES))
    rejected = next(t for t in doc["event_types"] if t["name"] == "ai.response.rejected")
    assert rejected["description"] == "AI response rejected"
    assert set(rejected["sample"]) == {"ticket", "ai_response", "reason"}
    system = {t["name"] for t in doc["event_types"] if t["system"]}
    assert system == {"sink.circuit_opened", "sink.circuit_closed", "sink.paused", "sink.resumed",
                      "delivery.failed", "sink.config_changed"}
    opened = next(t for t in doc["event_types"] if t["name"] == "sink.circuit_opened")
    assert opened["title"] == "Sink circuit opened" and opened["sample"]["sink"] == {"name": "crm",
                                                                                    "type": "generic_webhook"}


def test_system_events_are_published_by_the_gateway_only(client: Any, redis_client: Any) -> None:
    sample = next(t for t in SYSTEM_EVENT_TYPES if t.name == "sink.circuit_opened").sample
    response = client.post("/api/events", json={"event": "sink.circuit_opened", "data": sample}, headers=AUTH)
    assert response.status_code == 422
    assert response.get_json()["error"] == "system_event"
    assert response.get_json()["fields"] == {"event": ["A system event."]}
    assert redis_client.zcard("gw:events") == 0


def test_a_star_sink_gets_every_event_but_the_system_events(client: Any, redis_client: Any) -> None:
    runtime = client.application.extensions["gateway"]
    assert [s.name for s in runtime.subscribers("ticket.created")] == ["all"]
    assert runtime.subscribers("sink.circuit_opened") == ()


def test_health_checks(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json() == {"status": "ready"}
