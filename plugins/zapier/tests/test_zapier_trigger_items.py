"""What a Zap's trigger receives: every item has an ``id`` Zapier can deduplicate on (the
event's, the same on retries and replays); sample items have the live shape for every
catalogued event, a stable id, and come from the asking key's own sink."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.testing import Reply

KEY, SALES_KEY = "zk_" + "i" * 29, "zk_" + "s" * 29
ADMIN = "trigger-items-admin-token"
PUBLIC_URL = "https://support.example.com"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
TICKET = {"subject": "Printer on fire", "message": "Smoke.", "customer_email": "ann@example.com"}


def config(*sinks: dict[str, Any]) -> dict[str, Any]:
    return {"gateway": {"admin_token": ADMIN, "public_url": PUBLIC_URL},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": list(sinks) or [{"name": "zapier", "type": "zapier", "events": ["*"], "api_keys": [KEY]}]}


def subscribe(client: Any, url: str, event: str, key: str = KEY) -> None:
    response = client.post("/api/zapier/hooks", json={"hookUrl": url, "event": event}, headers={"X-API-Key": key})
    assert response.status_code == 201, response.get_json()


def samples(client: Any, event: str, key: str = KEY) -> list[dict[str, Any]]:
    response = client.get(f"/api/zapier/samples/{event}", headers={"X-API-Key": key})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def receive(client: Any, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {**TICKET, **fields}})
    assert response.status_code == 201
    ticket: dict[str, Any] = response.get_json()["ticket"]
    return ticket


def test_an_item_keeps_its_id_across_a_retry_and_a_replay(make_client: Any, recording_sink: Any,
                                                          drain_deliveries: Any) -> None:
    client = make_client(config())
    subscribe(client, recording_sink.url, "ticket.created")
    recording_sink.reply(Reply(503, headers={"Retry-After": "5"}))
    receive(client)

    attempts = drain_deliveries(client.application, run_due_retries=True)
    client.post(f"/api/deliveries/{attempts[0]['delivery_id']}/replay", headers=ADMIN_AUTH)
    drain_deliveries(client.application)

    items = [r.json() for r in recording_sink.requests]
    assert len(items) == 3
    assert {item["id"] for item in items} == {attempts[0]["event_id"]}
    assert items[0]["id"] == items[0]["event_id"]


def test_a_placeholder_sample_is_the_same_on_every_call(make_client: Any) -> None:
    client = make_client(config())

    first, again = samples(client, "ticket.resolved"), samples(client, "ticket.resolved")

    assert first == again and len(first) == 1
    assert first[0]["id"].startswith("evt_") and first[0]["id"] == first[0]["event_id"]


def test_recent_items_come_first_newest_first(make_client: Any) -> None:
    client = make_client(config())
    placeholder = samples(client, "ticket.created")
    tickets = [receive(client, subject=f"Ticket {n}") for n in range(4)]

    recent = samples(client, "ticket.created")

    assert [item["ticket_id"] for item in recent] == [t["id"] for t in reversed(tickets)][:3]
    assert placeholder[0]["id"] not in {item["id"] for item in recent}


def test_a_sinks_samples_are_its_own(make_client: Any, redis_url: str) -> None:
    only_created = {"name": "zapier", "type": "zapier", "events": ["ticket.created"], "api_keys": [KEY]}
    sales = {"name": "zapier-sales", "type": "zapier", "events": ["ticket.resolved"], "api_keys": [SALES_KEY]}
    before = make_client(config(only_created, sales))
    ticket = receive(before)
    assert samples(before, "ticket.created")[0]["ticket_id"] == ticket["id"]

    # Later the sales sink offers ticket.created too: it never saw that ticket, and its key
    # does not get the other sink's.
    after = make_client(config(only_created, {**sales, "events": ["ticket.created", "ticket.resolved"]}))
    [placeholder] = samples(after, "ticket.created", key=SALES_KEY)
    assert placeholder["ticket_id"] != ticket["id"]
    assert samples(after, "ticket.created", key=KEY)[0]["ticket_id"] == ticket["id"]


def test_ticket_url_is_there_only_with_a_public_url(make_client: Any) -> None:
    with_url = samples(make_client(config()), "ticket.created")[0]
    without = samples(make_client({**config(), "gateway": {"admin_token": ADMIN}}), "ticket.created")[0]

    assert with_url["ticket_url"] == f"{PUBLIC_URL}/tickets/{with_url['ticket_id']}"
    assert "ticket_url" not in without


# -- samples have the live shape, for every catalogued event ----------------------------------

AI = {"id": "air_9", "content": "Try turning it off and on."}


def live(client: Any, event: str) -> None:
    """Make ``event`` happen the way it does in production: a received ticket, an admin's
    change, or the host application publishing with no more than the required fields."""
    ticket = receive(client)
    if event == "ticket.created":
        return
    if event in ("ticket.updated", "ticket.resolved", "ticket.escalated"):
        status = {"ticket.updated": "open", "ticket.resolved": "resolved", "ticket.escalated": "escalated"}[event]
        response = client.patch(f"/api/tickets/{ticket['id']}", json={"status": status}, headers=ADMIN_AUTH)
        assert response.status_code == 200
        return
    data: dict[str, Any] = {
        "ai.response.rejected": {"ticket": ticket, "ai_response": AI, "reason": "Wrong product."},
        "conversation.added": {"conversation": {"id": "msg_1", "ticket_id": ticket["id"], "author": "Ann",
                                                "message": "Any news?"}},
        "feedback.received": {"feedback": {"id": "fb_1", "ticket_id": ticket["id"], "rating": 4}},
    }.get(event, {"ticket": ticket, "ai_response": AI})
    response = client.post("/api/events", json={"event": event, "data": data}, headers=ADMIN_AUTH)
    assert response.status_code == 202, response.get_json()


CATALOGUED = ["ticket.created", "ticket.updated", "ticket.resolved", "ticket.escalated", "ai.response.generated",
              "ai.response.requires_review", "ai.response.approved", "ai.response.rejected", "conversation.added",
              "feedback.received"]


@pytest.mark.parametrize("event", CATALOGUED)
def test_a_sample_has_the_keys_of_a_live_delivery(make_client: Any, recording_sink: Any, drain_deliveries: Any,
                                                  event: str) -> None:
    client = make_client(config())
    [placeholder] = samples(client, event)
    subscribe(client, recording_sink.url, event)

    live(client, event)
    drain_deliveries(client.application)

    [delivered] = [r.json() for r in recording_sink.requests if r.json()["event"] == event]
    assert sorted(placeholder) == sorted(delivered)
    assert sorted(samples(client, event)[0]) == sorted(delivered)  # and the recent item, too


def test_every_catalogued_event_is_checked(make_client: Any) -> None:
    client = make_client(config())
    # The gateway's system events are left out: only the gateway publishes them (not `live`),
    # and "*" does not offer them to Zaps.
    catalogue = [t["name"] for t in client.get("/api/event-types").get_json()["event_types"] if not t["system"]]
    assert sorted(catalogue) == sorted(CATALOGUED)
