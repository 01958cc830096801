"""``GET /api/tickets[/<id>]`` and ``PATCH /api/tickets/<id>``: admin-only, newest first
with cursors, and a change publishes its events in the same transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.plugins import EnvelopeSinkPlugin, EventRecorder

TOKEN = "tickets-admin-token-0123456789ab"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def create(client: Any, subject: str = "Cannot log in") -> dict[str, Any]:
    response = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": subject, "message": "Help", "customer_email": "jane@example.com"}})
    assert response.status_code == 201
    return response.get_json()["ticket"]


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}})


def stored_events(redis_client: Any) -> list[dict[str, Any]]:
    ids = [m.decode() for m in redis_client.zrange("gw:events", 0, -1)]
    return [json.loads(redis_client.get(f"gw:event:{i}")) for i in ids]


# -- auth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [("get", "/api/tickets"), ("get", "/api/tickets/x"),
                                              ("patch", "/api/tickets/x")])
def test_admin_token_required(client: Any, method: str, path: str) -> None:
    missing = getattr(client, method)(path, json={"status": "open"})
    assert missing.status_code == 401
    assert missing.get_json()["error"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = getattr(client, method)(path, json={"status": "open"}, headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status_code == 403
    assert wrong.get_json()["error"] == "forbidden"
    basic = getattr(client, method)(path, json={"status": "open"}, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401


def test_generated_admin_token_when_none_is_configured(make_client: Any, tmp_path: Any) -> None:
    client = make_client()
    token_file = tmp_path / "data" / "admin_token"
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert client.get("/api/tickets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # A second process on the same data directory gets the same token.
    assert make_client().application.extensions["gateway"].settings.admin_token == token


# -- get / list ---------------------------------------------------------------------------------

def test_get_ticket(client: Any) -> None:
    ticket = create(client)
    response = client.get(f"/api/tickets/{ticket['id']}", headers=AUTH)
    assert response.status_code == 200
    assert response.get_json() == {"ticket": ticket}


def test_unknown_ticket_is_404(client: Any) -> None:
    for response in (client.get("/api/tickets/nope", headers=AUTH),
                     client.patch("/api/tickets/nope", json={"status": "open"}, headers=AUTH)):
        assert response.status_code == 404
        assert response.get_json()["error"] == "ticket_not_found"


def test_list_is_newest_first_and_pages_with_a_cursor(client: Any) -> None:
    created = [create(client, f"ticket {i}") for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        response = client.get("/api/tickets" + query, headers=AUTH)
        assert response.status_code == 200
        doc = response.get_json()
        seen.extend(t["ticket_number"] for t in doc["tickets"])
        pages += 1
        # Tickets created while paging must not shift or repeat later pages.
        if pages == 1:
            create(client, "created while paging")
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [t["ticket_number"] for t in reversed(created)]


def test_list_with_many_tickets_in_the_same_millisecond(client: Any, redis_client: Any) -> None:
    tickets = [create(client, f"t{i}") for i in range(5)]
    # Force equal scores: ties are broken by id, and paging must still see each exactly once.
    for ticket in tickets:
        redis_client.zadd("gw:tickets", {ticket["id"]: 1_700_000_000_000})
    seen: list[str] = []
    cursor = ""
    while cursor is not None:
        doc = client.get(f"/api/tickets?limit=2&cursor={cursor}", headers=AUTH).get_json()
        seen.extend(t["id"] for t in doc["tickets"])
        cursor = doc["next_cursor"]
    assert sorted(seen) == sorted(t["id"] for t in tickets)
    assert len(seen) == 5


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=abc", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y"])
def test_bad_list_parameters_are_400(client: Any, query: str) -> None:
    response = client.get(f"/api/tickets?{query}", headers=AUTH)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == "invalid_parameter"
    assert list(doc["fields"]) == [query.split("=")[0]]


# -- patch --------------------------------------------------------------------------------------

def test_patch_status_publishes_updated_then_resolved(make_client: Any, redis_client: Any) -> None:
    observer = EventRecorder()
    client = make_client({"gateway": {"admin_token": TOKEN}}, plugins=[observer])
    ticket = create(client)
    response = client.patch(f"/api/tickets/{ticket['id']}", json={"status": "resolved", "priority": "high"},
                            headers=AUTH)
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["ticket"]["status"] == "resolved" and doc["ticket"]["priority"] == "high"
    assert doc["ticket"]["ticket_number"] == ticket["ticket_number"]
    assert doc["ticket"]["updated_at"] >= ticket["created_at"]
    assert doc["changed"] == ["status", "priority"]
    assert [e["event"] for e in doc["events"]] == ["ticket.updated", "ticket.resolved"]
    assert observer.names == ["ticket.created", "ticket.updated", "ticket.resolved"]

    # Both events share the change's millisecond, so the time index does not order them.
    events = {e["event"]: e for e in stored_events(redis_client)}
    assert sorted(events) == ["ticket.created", "ticket.resolved", "ticket.updated"]
    assert events["ticket.updated"]["data"]["ticket"] == doc["ticket"]
    assert events["ticket.resolved"]["data"]["ticket"] == doc["ticket"]
    assert client.get(f"/api/tickets/{ticket['id']}", headers=AUTH).get_json()["ticket"] == doc["ticket"]


def test_patch_to_escalated_publishes_escalated(client: Any, redis_client: Any) -> None:
    ticket = create(client)
    doc = client.patch(f"/api/tickets/{ticket['id']}", json={"status": "escalated"}, headers=AUTH).get_json()
    assert [e["event"] for e in doc["events"]] == ["ticket.updated", "ticket.escalated"]
    # Escalated again (no change): nothing published. Category only: ticket.updated alone.
    again = client.patch(f"/api/tickets/{ticket['id']}", json={"status": "escalated"}, headers=AUTH).get_json()
    assert again["events"] == [] and again["changed"] == []
    category = client.patch(f"/api/tickets/{ticket['id']}", json={"category": "Billing"}, headers=AUTH).get_json()
    assert [e["event"] for e in category["events"]] == ["ticket.updated"]
    assert sorted(e["event"] for e in stored_events(redis_client)) == [
        "ticket.created", "ticket.escalated", "ticket.updated", "ticket.updated"]


def test_patch_events_carry_pending_deliveries_for_subscribed_sinks(make_client: Any, redis_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}, "sinks": [
        {"name": "ops", "type": "envelope", "url": "http://127.0.0.1:9/hook", "events": ["ticket.resolved"]}]},
        plugins=[EnvelopeSinkPlugin()])
    ticket = create(client)
    client.patch(f"/api/tickets/{ticket['id']}", json={"status": "resolved"}, headers=AUTH)
    deliveries = [redis_client.hgetall(f"gw:delivery:{d.decode()}")
                  for d in redis_client.zrange("gw:deliveries", 0, -1)]
    assert [(d[b"event"], d[b"sink"], d[b"status"]) for d in deliveries] == [(b"ticket.resolved", b"ops", b"pending")]


@pytest.mark.parametrize(("body", "field"), [({"status": "done"}, "status"), ({"priority": "p1"}, "priority"),
                                             ({"subject": "new"}, "subject"), ({"category": "x" * 101}, "category"),
                                             ({"category": "Bill\u0000ing"}, "category")])
def test_bad_patch_is_422_and_changes_nothing(client: Any, redis_client: Any, body: dict[str, Any],
                                              field: str) -> None:
    ticket = create(client)
    response = client.patch(f"/api/tickets/{ticket['id']}", json=body, headers=AUTH)
    assert response.status_code == 422
    assert list(response.get_json()["fields"]) == [field]
    assert client.get(f"/api/tickets/{ticket['id']}", headers=AUTH).get_json()["ticket"] == ticket
    assert redis_client.zcard("gw:events") == 1


def test_empty_or_non_json_patch(client: Any) -> None:
    ticket = create(client)
    empty = client.patch(f"/api/tickets/{ticket['id']}", json={}, headers=AUTH)
    assert empty.status_code == 422 and empty.get_json()["error"] == "validation_failed"
    form = client.patch(f"/api/tickets/{ticket['id']}", data="status=open", headers=AUTH,
                        content_type="application/x-www-form-urlencoded")
    assert form.status_code == 415
    broken = client.patch(f"/api/tickets/{ticket['id']}", data="{", headers=AUTH, content_type="application/json")
    assert broken.status_code == 400 and broken.get_json()["error"] == "malformed_json"
    array = client.patch(f"/api/tickets/{ticket['id']}", json=["status"], headers=AUTH)
    assert array.status_code == 400


def test_concurrent_patches_are_serialised(make_runtime: Any) -> None:
    """Two updates racing on one ticket: the transaction retries on the fresh ticket, so both
    changes survive and each published event carries the state it produced."""
    from gateway.publish.tickets import TicketStore

    runtime = make_runtime({"gateway": {"admin_token": TOKEN}})
    from gateway.web.app import create_app

    client = create_app(runtime).test_client()
    ticket = create(client)
    store = TicketStore(runtime)
    # Interleave: the first patch's plan reads the ticket, then the second patch commits
    # before the first reaches EXEC (a real concurrent writer), forcing a WatchError + retry.
    original_get = runtime.redis.pipeline

    interfered = []

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = original_get(*args, **kwargs)
        real_multi = pipe.multi

        def multi() -> None:
            if not interfered:
                interfered.append(True)
                store.patch(ticket["id"], {"priority": "urgent"})
            real_multi()

        pipe.multi = multi
        return pipe

    runtime.redis.pipeline = pipeline
    change = store.patch(ticket["id"], {"status": "open"})
    runtime.redis.pipeline = original_get
    assert change.ticket["status"] == "open" and change.ticket["priority"] == "urgent"
    final = client.get(f"/api/tickets/{ticket['id']}", headers=AUTH).get_json()["ticket"]
    assert final["status"] == "open" and final["priority"] == "urgent"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.integers(min_value=1, max_value=4), min_size=0, max_size=25),
       limit=st.integers(min_value=1, max_value=7))
def test_paging_returns_every_ticket_once_newest_first(make_runtime: Any, redis_client: Any, scores: list[int],
                                                       limit: int) -> None:
    """Whatever the ties in creation time and the page size, paging visits every ticket
    exactly once, in (time, id) descending order."""
    from gateway.publish.tickets import TicketStore

    redis_client.flushdb()
    store = TicketStore(make_runtime())
    tickets = {f"t{i:02d}": score for i, score in enumerate(scores)}
    for ticket_id, score in tickets.items():
        redis_client.set(f"gw:ticket:{ticket_id}", json.dumps({"id": ticket_id}))
        redis_client.zadd("gw:tickets", {ticket_id: score})
    seen: list[str] = []
    cursor = None
    for _ in range(len(tickets) + 2):
        page = store.list(limit=limit, cursor=cursor)
        assert len(page.tickets) <= limit
        seen.extend(t["id"] for t in page.tickets)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(tickets, key=lambda t: (tickets[t], t), reverse=True)
