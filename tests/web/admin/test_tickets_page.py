"""The console's Tickets pages through Flask's test client, on the embedded Redis, with real
deliveries to a local HTTP sink: search and filters, a ticket's events with their deliveries,
and a status change published through the normal path and audited."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.console import TOKEN, console_config, create_ticket, csrf_from, sign_in
from support.delivery import drain_queued
from support.plugins import PlainSinkPlugin
from support.servers import SinkServer

from gateway.integrations import audit
from gateway.publish.tickets import TicketQuery, TicketStore


def config(url: str) -> dict[str, Any]:
    return console_config([
        {"name": "crm", "type": "plain", "url": url, "secret": "crm-signing-secret-value",
         "events": ["ticket.created", "ticket.updated", "ticket.resolved"], "retry_schedule": []},
        {"name": "chat", "type": "plain", "url": url, "events": ["ticket.resolved"], "retry_schedule": []}])


@pytest.fixture
def console(signed_in: Any, sink: SinkServer) -> Any:
    return signed_in(config(sink.url), [PlainSinkPlugin()])


def runtime_of(client: Any) -> Any:
    return client.application.extensions["gateway"]


def listed_numbers(client: Any, query: str = "") -> list[str]:
    page = client.get(f"/admin/tickets?{query}")
    assert page.status_code == 200
    return re.findall(r'href="/admin/tickets/[0-9a-f-]+" class="nowrap">(TKT-\d+-\d+)<', page.text)


def test_tickets_are_listed_newest_first_and_searched_by_number_email_or_subject(console: Any) -> None:
    printer = create_ticket(console, "Printer on fire", "jane@example.com", "urgent")
    invoice = create_ticket(console, "Invoice missing", "bob@corp.example", "low")
    login = create_ticket(console, "Cannot log in", "BOB@corp.example")

    assert listed_numbers(console) == [login["ticket_number"], invoice["ticket_number"], printer["ticket_number"]]
    assert listed_numbers(console, f"q={printer['ticket_number'].lower()}") == [printer["ticket_number"]]
    assert listed_numbers(console, "q=bob%40corp") == [login["ticket_number"], invoice["ticket_number"]]
    assert listed_numbers(console, "q=INVOICE") == [invoice["ticket_number"]]
    assert listed_numbers(console, "priority=urgent") == [printer["ticket_number"]]
    assert listed_numbers(console, "q=bob&priority=low") == [invoice["ticket_number"]]
    assert listed_numbers(console, "status=resolved") == []
    nothing = console.get("/admin/tickets?q=no-such-words")
    assert "No tickets match “no-such-words”" in nothing.text and "clear the search" in nothing.text


def test_an_empty_gateway_says_where_tickets_come_from(console: Any) -> None:
    page = console.get("/admin/tickets")
    assert "No tickets yet" in page.text and "POST /api/webhooks/receive" in page.text


def test_tickets_page_through_older_ones_with_a_cursor(console: Any) -> None:
    numbers = [create_ticket(console, f"Ticket {i}")["ticket_number"] for i in range(30)]
    first = console.get("/admin/tickets")
    assert len(listed_numbers(console)) == 25
    older = re.search(r'href="(/admin/tickets\?cursor=[^"]+)">Older tickets', first.text)
    assert older
    rest = re.findall(r'class="nowrap">(TKT-\d+-\d+)<', console.get(older.group(1).replace("&amp;", "&")).text)
    assert listed_numbers(console) + rest == numbers[::-1]
    assert console.get("/admin/tickets?cursor=not-a-cursor").status_code == 400


def test_a_search_looks_at_a_bounded_number_of_tickets_and_says_so(console: Any) -> None:
    create_ticket(console, "Needle")
    for i in range(4):
        create_ticket(console, f"Hay {i}")
    store = TicketStore(runtime_of(console))
    page = store.search(TicketQuery(text="needle"), limit=10, scan_limit=3)
    assert page.tickets == [] and not page.complete and page.scanned == 3 and page.next_cursor
    further = store.search(TicketQuery(text="needle"), limit=10, cursor=page.next_cursor, scan_limit=3)
    assert [t["subject"] for t in further.tickets] == ["Needle"] and further.complete


def test_a_ticket_page_shows_its_fields_events_and_deliveries(console: Any, sink: SinkServer) -> None:
    ticket = create_ticket(console, "Printer on fire")
    drain_queued(runtime_of(console))
    page = console.get(f"/admin/tickets/{ticket['id']}")
    assert page.status_code == 200
    text = page.text
    assert ticket["ticket_number"] in text and "Printer on fire" in text and "jane@example.com" in text
    event = re.search(r'<li class="card" id="event-(evt_\w+)">\s*<h3><code>ticket.created</code>', text)
    assert event
    row = text[text.index('id="event-'):]
    assert "crm" in row and 'badge-delivered">delivered<' in row
    delivery_id = sink.received[0].headers["X-Webhook-Delivery"]
    assert f'href="/admin/deliveries/{delivery_id}"' in text
    assert 'data-poll-done="true"' in text  # nothing under way: the page does not poll


def test_changing_the_status_publishes_through_the_normal_path_and_is_audited(console: Any, sink: SinkServer
                                                                             ) -> None:
    ticket = create_ticket(console, "Printer on fire")
    drain_queued(runtime_of(console))
    page = console.get(f"/admin/tickets/{ticket['id']}")
    response = console.post(f"/admin/tickets/{ticket['id']}",
                            data={"status": "resolved", "priority": "high", "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/tickets/{ticket['id']}"

    after = console.get(f"/admin/tickets/{ticket['id']}").text
    assert f"{ticket['ticket_number']} updated (status new → resolved, priority medium → high); " \
           "published ticket.updated, ticket.resolved." in after
    assert 'badge-resolved">resolved<' in after
    # The new events are listed, in order, with deliveries under way: the page polls.
    names = re.findall(r'id="event-evt_\w+">\s*<h3><code>([\w.]+)</code>', after)
    assert names == ["ticket.created", "ticket.updated", "ticket.resolved"]
    assert 'badge-pending">pending<' in after and 'data-poll-done' not in after
    progress = console.get(f"/admin/tickets/{ticket['id']}.json").json
    drain_queued(runtime_of(console))
    assert console.get(f"/admin/tickets/{ticket['id']}.json").json["status"] != progress["status"]

    received = sorted((r.headers["X-Webhook-Event"], r.path) for r in sink.received)
    assert [name for name, _ in received] == ["ticket.created", "ticket.resolved", "ticket.resolved",
                                              "ticket.updated"]
    resolved = console.get(f"/admin/tickets/{ticket['id']}").text
    resolved_event = resolved[resolved.index("<h3><code>ticket.resolved</code>"):]
    assert resolved_event.count('badge-delivered">delivered<') == 2  # crm and chat

    entries, _ = audit.read(runtime_of(console))
    assert entries[0]["action"] == "update" and entries[0]["target"] == f"ticket:{ticket['ticket_number']}"
    assert entries[0]["changes"] == {"status": {"from": "new", "to": "resolved"},
                                     "priority": {"from": "medium", "to": "high"}}
    assert entries[0]["actor"] == "admin"


def test_the_api_patch_is_audited_too(console: Any) -> None:
    ticket = create_ticket(console, "Printer on fire")
    response = console.patch(f"/api/tickets/{ticket['id']}", json={"priority": "urgent"},
                             headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    entries, _ = audit.read(runtime_of(console))
    assert entries[0]["changes"] == {"priority": {"from": "medium", "to": "urgent"}}


def test_a_bad_value_is_shown_by_its_field_and_nothing_changes(console: Any, sink: SinkServer) -> None:
    ticket = create_ticket(console, "Printer on fire")
    page = console.get(f"/admin/tickets/{ticket['id']}")
    response = console.post(f"/admin/tickets/{ticket['id']}",
                            data={"status": "on-fire", "priority": "medium", "csrf_token": csrf_from(page.text)})
    assert response.status_code == 422
    assert 'id="ticket-status-error"' in response.text and "Must be one of" in response.text
    assert TicketStore(runtime_of(console)).get(ticket["id"])["status"] == "new"


def test_no_change_publishes_nothing(console: Any) -> None:
    ticket = create_ticket(console, "Printer on fire")
    page = console.get(f"/admin/tickets/{ticket['id']}")
    console.post(f"/admin/tickets/{ticket['id']}",
                 data={"status": "new", "priority": "medium", "csrf_token": csrf_from(page.text)})
    after = console.get(f"/admin/tickets/{ticket['id']}").text
    assert "Nothing changed" in after
    assert re.findall(r'<h3><code>([\w.]+)</code>', after) == ["ticket.created"]


def test_the_form_needs_sign_in_and_its_csrf_token(make_client: Any, sink: SinkServer) -> None:
    client = make_client(config(sink.url), plugins=[PlainSinkPlugin()])
    ticket = create_ticket(client, "Printer on fire")
    assert client.get(f"/admin/tickets/{ticket['id']}").status_code == 302
    assert client.get("/admin/tickets").status_code == 302
    assert client.get(f"/admin/tickets/{ticket['id']}.json").status_code == 401
    refused = client.post(f"/admin/tickets/{ticket['id']}", data={"status": "resolved"})
    assert refused.status_code == 302 and "/admin/signin" in refused.headers["Location"]
    sign_in(client)
    no_token = client.post(f"/admin/tickets/{ticket['id']}", data={"status": "resolved"})
    assert no_token.status_code == 400 and "This form has expired" in no_token.text
    assert TicketStore(runtime_of(client)).get(ticket["id"])["status"] == "new"


def test_an_unknown_ticket_is_a_clear_404(console: Any) -> None:
    page = console.get("/admin/tickets/no-such-ticket")
    assert page.status_code == 404 and "No such ticket" in page.text
