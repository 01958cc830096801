"""The console's Tickets, delivery detail and charts in headless Chromium against a real
gateway (gunicorn, two web workers), a real delivery worker and a local receiver: find a
ticket, change its status and watch the events it publishes delivered, read a delivery's
request as it was sent with its secrets hidden, and the 24-hour charts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from support.servers import SinkServer

pytestmark = pytest.mark.browser
Gateway = Any  # the conftest's class, reached through its fixture
AUTH_HEADER = "Bearer crm-static-credential-0123456789"
SLACK_PATH = "/services/T0001/B0001/slackpathsecret0123"


@pytest.fixture
def console_sinks(sink_server: SinkServer) -> list[dict[str, Any]]:
    """``crm`` (generic webhook, signed, with a secret static header) and ``slack`` (the
    Slack message to a webhook URL whose path is the secret), both at the local receiver."""
    return [{"name": "crm", "type": "generic_webhook", "url": sink_server.url, "secret": "crm-signing-secret",
             "headers": {"Authorization": AUTH_HEADER}, "events": ["ticket.created", "ticket.resolved"],
             "retry_schedule": []},
            {"name": "slack", "type": "slack", "url": sink_server.url + SLACK_PATH, "channel": "#support",
             "events": ["ticket.resolved"], "retry_schedule": []}]


def sign_in(page: Any, gateway: Gateway) -> None:
    page.goto(f"{gateway.base_url}/admin/")
    page.get_by_label("Admin token").fill(gateway.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()


def no_sideways_scroll(page: Any) -> None:
    size = page.viewport_size
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, page.url
    page.set_viewport_size(size)


def test_find_tickets_by_search_and_filters(page: Any, gateway: Gateway, screenshot: Any) -> None:
    printer = gateway.create_ticket("Printer on fire", "jane.doe@example.com", "urgent")
    invoice = gateway.create_ticket("Invoice missing for order 4411 " + "and a very long subject " * 6,
                                    "bob.a.very.long.address.for.layout@accounting.corp.example", "low")
    sign_in(page, gateway)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tickets").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(invoice["ticket_number"])  # newest first
    screenshot(page, "tickets", phone=True)
    no_sideways_scroll(page)

    page.get_by_label("Search", exact=True).fill("printer")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(printer["ticket_number"])

    page.get_by_label("Search", exact=True).fill("")
    page.get_by_label("Priority").select_option("low")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bob.a.very.long.address")

    page.get_by_label("Search", exact=True).fill(printer["ticket_number"])
    page.get_by_label("Priority").select_option("")
    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status")).to_contain_text("No tickets match")
    screenshot(page, "tickets-no-match")


def test_change_a_tickets_status_and_see_its_events_delivered(page: Any, gateway: Gateway, sink_server: SinkServer,
                                                              screenshot: Any) -> None:
    ticket = gateway.create_ticket("Printer on fire")
    gateway.wait_until(lambda: len(sink_server.received) == 1, "ticket.created to be delivered")
    sign_in(page, gateway)
    page.goto(f"{gateway.base_url}/admin/tickets?q={ticket['ticket_number']}")
    page.get_by_role("link", name=ticket["ticket_number"]).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Printer on fire")

    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").first).to_contain_text("published ticket.updated, ticket.resolved")
    resolved = page.locator("#ticket-events li.card").filter(has_text="ticket.resolved")
    # The page polls while deliveries are under way and shows them landing.
    expect(resolved.locator("tbody tr")).to_have_count(2)
    expect(resolved.locator("tr", has_text="crm").locator(".badge")).to_have_text("delivered")
    expect(resolved.locator("tr", has_text="slack").locator(".badge")).to_have_text("delivered")
    screenshot(page, "ticket", phone=True)
    no_sideways_scroll(page)

    events = sorted(r.headers.get("X-Webhook-Event") or "slack" for r in sink_server.received)
    assert events == ["slack", "ticket.created", "ticket.resolved"]
    crm = next(r for r in sink_server.received if r.headers.get("X-Webhook-Event") == "ticket.resolved")
    assert crm.json["data"]["ticket"]["status"] == "resolved"


def test_a_delivery_shows_the_request_as_sent_with_secrets_hidden(page: Any, gateway: Gateway,
                                                                  sink_server: SinkServer, screenshot: Any) -> None:
    ticket = gateway.create_ticket("Printer on fire")
    gateway.wait_until(lambda: len(sink_server.received) == 1, "ticket.created to be delivered")
    sign_in(page, gateway)
    page.goto(f"{gateway.base_url}/admin/deliveries?q={ticket['ticket_number']}")
    row = page.locator("table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Printer on fire")
    row.get_by_role("link", name=re.compile("dlv_")).click()

    attempt = page.locator("#attempt-1")
    attempt.get_by_text("Request body as sent").click()
    body = attempt.locator("details.sent-body pre")
    expect(body).to_contain_text('"event": "ticket.created"')
    expect(body).to_contain_text(ticket["ticket_number"])
    attempt.get_by_text("Request headers", exact=True).click()
    headers = attempt.locator("details table")
    expect(headers.locator("tr", has_text="Authorization")).to_contain_text("[hidden]")
    expect(page.locator("main")).not_to_contain_text("crm-static-credential")
    expect(page.locator("main")).not_to_contain_text("crm-signing-secret")
    screenshot(page, "delivery-as-sent", phone=True)
    no_sideways_scroll(page)


def test_a_slack_delivery_shows_the_slack_message_and_not_its_url(page: Any, gateway: Gateway,
                                                                  sink_server: SinkServer, screenshot: Any) -> None:
    ticket = gateway.create_ticket("Printer on fire")
    response = page.request.patch(f"{gateway.base_url}/api/tickets/{ticket['id']}", data={"status": "resolved"},
                                  headers={"Authorization": f"Bearer {gateway.admin_token}"})
    assert response.ok, response.text()
    gateway.wait_until(lambda: any(SLACK_PATH in r.path for r in sink_server.received), "the Slack message")
    sign_in(page, gateway)
    page.goto(f"{gateway.base_url}/admin/deliveries?q={ticket['ticket_number']}&sink=slack")
    page.locator("table tbody tr").get_by_role("link", name=re.compile("dlv_")).click()
    attempt = page.locator("#attempt-1")
    expect(attempt).to_contain_text("HTTP 200")
    attempt.get_by_text("Request body as sent").click()
    expect(attempt.locator("details.sent-body pre")).to_contain_text('"channel": "#support"')
    expect(page.locator("main")).not_to_contain_text("slackpathsecret0123")
    screenshot(page, "delivery-slack-as-sent")


def test_charts_render_with_their_numbers_in_titles(page: Any, gateway: Gateway, sink_server: SinkServer,
                                                    screenshot: Any) -> None:
    for subject in ("Printer on fire", "Invoice missing", "Cannot log in"):
        gateway.create_ticket(subject)
    gateway.wait_until(lambda: len(sink_server.received) == 3, "three deliveries")
    sign_in(page, gateway)
    chart = page.locator("#chart-crm-attempts svg")
    expect(chart).to_be_visible()
    expect(chart.locator("> title")).to_have_text(re.compile(r"Last 24 hours: 3 delivered, 0 retrying, 0 failed"))
    expect(chart.locator("g.chart-bar title").filter(has_text=": 3 delivered")).to_have_count(1)
    expect(page.locator("#chart-crm-latency svg g.chart-point title").filter(has_text="p95 ≤")).to_have_count(1)
    expect(page.locator("#chart-slack-attempts")).to_contain_text("Nothing in the last 24 hours.")
    screenshot(page, "integrations-charts", phone=True)

    page.goto(f"{gateway.base_url}/admin/deliveries")
    expect(page.locator("#chart-deliveries svg > title")).to_have_text(re.compile("3 delivered"))
    screenshot(page, "deliveries-chart", phone=True)
    no_sideways_scroll(page)


def test_the_new_pages_and_form_need_sign_in_and_the_csrf_token(browser: Any, page: Any, gateway: Gateway) -> None:
    ticket = gateway.create_ticket("Printer on fire")
    for path in ("/admin/tickets", f"/admin/tickets/{ticket['id']}"):
        page.goto(gateway.base_url + path)
        expect(page).to_have_url(re.compile(r"/admin/signin\?next="))
    anonymous = page.request.post(f"{gateway.base_url}/admin/tickets/{ticket['id']}", form={"status": "resolved"},
                                  max_redirects=0)
    assert anonymous.status == 302 and "/admin/signin" in anonymous.headers["location"]

    sign_in(page, gateway)
    forged = page.request.post(f"{gateway.base_url}/admin/tickets/{ticket['id']}",
                               form={"status": "resolved", "csrf_token": "forged"}, max_redirects=0)
    assert forged.status == 400 and "This form has expired" in forged.text()
    assert gateway.api(f"/api/tickets/{ticket['id']}")["ticket"]["status"] == "new"
