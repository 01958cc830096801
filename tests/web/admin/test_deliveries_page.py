"""The console's Deliveries list and delivery page through Flask's test client, with real
deliveries to a local HTTP sink: each delivery's ticket, finding deliveries by delivery
id / event id / ticket number, and each attempt's request as it was sent, secrets hidden."""

from __future__ import annotations

import re
from typing import Any

import pytest
from support.console import console_config
from support.console import create_ticket as console_ticket
from support.delivery import drain_queued
from support.plugins import KeyedSinkPlugin, PlainSinkPlugin
from support.servers import SinkServer

API_KEY = "sk_live_0123456789abcdef-body-secret"
SLACK_TOKEN = "T000/B000/XXXXSLACKPATHSECRET"


def config(url: str) -> dict[str, Any]:
    return console_config([
        {"name": "crm", "type": "plain", "url": url, "secret": "crm-signing-secret-value",
         "events": ["ticket.created"], "retry_schedule": []},
        {"name": "keyed", "type": "keyed", "url": url, "api_key": API_KEY, "events": ["ticket.created"],
         "retry_schedule": []},
        {"name": "slack", "type": "slack", "url": f"{url}/services/{SLACK_TOKEN}", "channel": "#support",
         "events": ["ticket.created"], "retry_schedule": []}])


@pytest.fixture
def console(signed_in: Any, sink: SinkServer) -> Any:
    return signed_in(config(sink.url), [PlainSinkPlugin(), KeyedSinkPlugin()])


def create_ticket(client: Any, subject: str) -> dict[str, Any]:
    return console_ticket(client, subject, deliver=True)


def listed(client: Any, query: str = "") -> list[tuple[str, str]]:
    """(delivery id, ticket number) per row of the Deliveries list."""
    page = client.get(f"/admin/deliveries?{query}")
    assert page.status_code == 200
    return re.findall(r'href="/admin/deliveries/(dlv_\w+)">.*?class="nowrap">(TKT-[\d-]+)<', page.text, re.S)


def delivery_ids(sink: SinkServer, path_part: str) -> list[str]:
    return [r.headers.get("X-Webhook-Delivery") or "" for r in sink.received if path_part in r.path]


def test_each_delivery_shows_its_ticket_number_and_subject(console: Any) -> None:
    ticket = create_ticket(console, "Printer on fire")
    page = console.get("/admin/deliveries").text
    assert console.get("/admin/deliveries?limit=³").text.count("Printer on fire") == 3  # the default page size
    rows = listed(console)
    assert len(rows) == 3 and {number for _, number in rows} == {ticket["ticket_number"]}
    assert page.count('class="help ticket-subject">Printer on fire<') == 3
    assert f'href="/admin/tickets/{ticket["id"]}"' in page


def test_find_deliveries_by_delivery_id_event_id_or_ticket_number(console: Any) -> None:
    first = create_ticket(console, "Printer on fire")
    second = create_ticket(console, "Invoice missing")
    by_ticket = listed(console, f"q={second['ticket_number']}")
    assert len(by_ticket) == 3 and {n for _, n in by_ticket} == {second["ticket_number"]}
    assert listed(console, f"q={first['ticket_number'].lower()}&sink=crm") == [
        (by_id, first["ticket_number"]) for by_id, n in listed(console, "sink=crm") if n == first["ticket_number"]]

    one = by_ticket[0][0]
    assert listed(console, f"q={one}") == [(one, second["ticket_number"])]
    page = console.get(f"/admin/deliveries/{one}").text
    event_id = re.search(r"(evt_\w+)", page)
    assert event_id
    assert sorted(listed(console, f"q={event_id.group(1)}")) == sorted(by_ticket)

    missing = console.get("/admin/deliveries?q=TKT-1999-001")
    assert "No delivery found for “TKT-1999-001”" in missing.text
    assert console.get("/admin/deliveries?q=" + "x" * 5000).status_code == 200


def test_the_delivery_page_shows_the_request_as_sent_with_secrets_hidden(console: Any, sink: SinkServer) -> None:
    ticket = create_ticket(console, "Printer on fire")
    received = {r.path: r for r in sink.received}
    keyed = next(r for r in received.values() if API_KEY.encode() in r.body)
    page = console.get(f"/admin/deliveries?q={ticket['ticket_number']}&sink=keyed").text
    keyed_id = re.search(r'href="/admin/deliveries/(dlv_\w+)"', page)
    assert keyed_id and keyed.json["event"] == "ticket.created"

    detail = console.get(f"/admin/deliveries/{keyed_id.group(1)}").text
    assert "Request body as sent" in detail
    assert "&#34;api_key&#34;: &#34;[hidden]&#34;" in detail and API_KEY not in detail
    assert "Printer on fire" in detail and f'href="/admin/tickets/{ticket["id"]}"' in detail

    slack = re.search(r'href="/admin/deliveries/(dlv_\w+)"',
                      console.get(f"/admin/deliveries?q={ticket['ticket_number']}&sink=slack").text)
    assert slack
    slack_page = console.get(f"/admin/deliveries/{slack.group(1)}").text
    # The Slack message itself (blocks / attachments), not the gateway's event...
    sent = next(r for r in sink.received if "/services/" in r.path)
    assert "#support" in slack_page and "&#34;channel&#34;" in slack_page and sent.json["channel"] == "#support"
    # ...and the webhook URL, a secret option, without its path.
    assert SLACK_TOKEN not in slack_page and "XXXXSLACKPATHSECRET" not in slack_page

    crm = re.search(r'href="/admin/deliveries/(dlv_\w+)"',
                    console.get(f"/admin/deliveries?q={ticket['ticket_number']}&sink=crm").text)
    assert crm
    crm_page = console.get(f"/admin/deliveries/{crm.group(1)}").text
    assert "crm-signing-secret-value" not in crm_page
    assert re.search(r"X-Webhook-Signature</th><td><code class=\"wrap\">\[hidden\]", crm_page)


def test_the_sent_body_is_bounded_by_the_excerpt_rule(console: Any) -> None:
    body = {"event": "ticket.create", "data": {"subject": "Long", "message": "x" * 20_000,
                                               "customer_email": "jane@example.com"}}
    assert console.post("/api/webhooks/receive", json=body).status_code == 201
    drain_queued(console.application.extensions["gateway"])
    crm = re.search(r'href="/admin/deliveries/(dlv_\w+)"', console.get("/admin/deliveries?sink=crm").text)
    assert crm
    record = console.application.extensions["gateway"].redis.lrange(f"gw:delivery:{crm.group(1)}:attempts", 0, -1)
    assert len(record[0]) < 6000  # the body is kept to 2 KB, whatever was sent
    page = console.get(f"/admin/deliveries/{crm.group(1)}").text
    assert re.search(r"The first 2048 characters of \d{5} bytes", page)
