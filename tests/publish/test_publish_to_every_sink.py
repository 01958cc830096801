"""One event, several subscribed sinks: each gets a delivery of its own, seen in the delivery
log through the API, and each destination receives the event once; a sink not subscribed
to the event gets none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.delivery import drain_queued
from support.plugins import PlainSinkPlugin
from support.servers import SinkServer

TOKEN = "publish-admin-token-0123456789-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TICKET = {"event": "ticket.create", "data": {"subject": "Two sinks", "message": "Hello",
                                             "customer_email": "ann@example.com"}}


@pytest.fixture
def servers() -> Iterator[tuple[SinkServer, SinkServer, SinkServer]]:
    with SinkServer() as crm, SinkServer() as chat, SinkServer() as billing:
        yield crm, chat, billing


@pytest.fixture
def client(make_client: Any, servers: tuple[SinkServer, SinkServer, SinkServer]) -> Any:
    crm, chat, billing = servers
    sinks = [{"name": "crm", "type": "plain", "url": crm.url, "events": ["ticket.created"]},
             {"name": "chat", "type": "plain", "url": chat.url, "events": ["*"]},
             {"name": "billing", "type": "plain", "url": billing.url, "events": ["ticket.resolved"]}]
    return make_client({"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
                        "sinks": sinks}, plugins=[PlainSinkPlugin()])


def logged(client: Any, **query: str) -> list[dict[str, Any]]:
    response = client.get("/api/deliveries", query_string=query, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["deliveries"]


def test_a_received_ticket_registers_one_delivery_per_subscribed_sink(client: Any, servers: Any) -> None:
    assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201
    deliveries = logged(client, event="ticket.created")
    assert sorted(d["sink"] for d in deliveries) == ["chat", "crm"]
    assert len({d["id"] for d in deliveries}) == 2 and len({d["event_id"] for d in deliveries}) == 1
    assert {d["status"] for d in deliveries} == {"pending"}
    for sink in ("crm", "chat"):
        assert [d["sink"] for d in logged(client, sink=sink)] == [sink]
    assert logged(client, sink="billing") == []
    # Each waits in its own sink's queue (the sink state API), so each sink's limits apply to it.
    sinks = client.get("/api/sinks", headers=AUTH).get_json()["sinks"]
    assert {s["name"]: s["counts"]["queued"] for s in sinks} == {"crm": 1, "chat": 1, "billing": 0}

    drain_queued(client.application.extensions["gateway"])
    crm, chat, billing = servers
    assert (crm.count(), chat.count(), billing.count()) == (1, 1, 0)
    assert {d["status"] for d in logged(client, event="ticket.created")} == {"delivered"}
    # Each destination got its own delivery id, the one the log shows for its sink.
    by_sink = {d["sink"]: d["id"] for d in deliveries}
    assert crm.received[0].headers["X-Webhook-Delivery"] == by_sink["crm"]
    assert chat.received[0].headers["X-Webhook-Delivery"] == by_sink["chat"]


def test_an_event_published_through_the_api_reaches_both_of_its_sinks(client: Any) -> None:
    ticket = {"id": "t-1", "ticket_number": "TKT-2026-001", "subject": "Done", "status": "resolved",
              "customer_email": "a@example.com"}
    response = client.post("/api/events", json={"event": "ticket.resolved", "data": {"ticket": ticket}},
                           headers=AUTH)
    assert response.status_code == 202
    deliveries = logged(client, event="ticket.resolved")
    assert sorted(d["sink"] for d in deliveries) == ["billing", "chat"]
    assert {d["event_id"] for d in deliveries} == {response.get_json()["event_id"]}
