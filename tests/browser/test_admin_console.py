"""The admin console in headless Chromium against a real gateway (gunicorn, two web
workers), a real delivery worker and a local sink that fails once, then succeeds."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect
from support.servers import Answer

pytestmark = pytest.mark.browser
Gateway = SinkServer = Any  # the conftest's classes, reached through fixtures


def sign_in(page: Any, gateway: Gateway, token: str | None = None) -> None:
    page.goto(f"{gateway.base_url}/admin/")
    page.get_by_label("Admin token").fill(token or gateway.admin_token)
    page.get_by_role("button", name="Sign in").click()


def test_wrong_token_is_refused(page: Any, gateway: Gateway, screenshot: Any) -> None:
    sign_in(page, gateway, token="not-the-right-token")
    expect(page.get_by_role("alert")).to_have_text("That admin token is not valid.")
    expect(page.get_by_label("Admin token")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "signin-refused")
    page.goto(f"{gateway.base_url}/admin/deliveries")
    expect(page).to_have_url(re.compile(r"/admin/signin\?next="))


def test_find_a_failed_delivery_replay_it_and_see_it_delivered(page: Any, gateway: Gateway,
                                                               sink_server: SinkServer, screenshot: Any) -> None:
    # The first request fails; everything after it succeeds.
    sink_server.answer(Answer(status=503, body=b"receiver is down for maintenance"))
    ticket = gateway.create_ticket("Printer on fire")
    gateway.wait_until(lambda: any(d["status"] == "failed"
                                   for d in gateway.api("/api/deliveries?sink=crm")["deliveries"]),
               "the first delivery to fail")

    sign_in(page, gateway)
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()
    expect(page.locator("#sink-crm")).to_contain_text("generic_webhook")
    screenshot(page, "integrations")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deliveries").click()
    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Sink").select_option("crm")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ticket.created")
    expect(rows.first).to_contain_text("HTTP 503")
    screenshot(page, "deliveries-failed")

    rows.first.get_by_role("link").click()
    expect(page.locator("#attempt-1")).to_contain_text("HTTP 503")
    expect(page.locator("#attempt-1")).to_contain_text("receiver is down for maintenance")
    page.locator("#attempt-1").get_by_text("Request headers", exact=True).click()
    headers = page.locator("#attempt-1 details table")
    expect(headers).to_contain_text("X-Webhook-Signature")
    expect(headers).not_to_contain_text("crm-signing-secret")
    delivery_url = page.url

    page.get_by_role("button", name="Replay this delivery").click()
    expect(page.get_by_role("status").first).to_contain_text("Replay")
    # The page polls the delivery's status and refreshes itself when it lands.
    expect(page.locator("#delivery-status")).to_have_text("delivered")
    expect(page.locator("#attempt-2")).to_contain_text("HTTP 200")
    assert page.url == delivery_url
    screenshot(page, "delivery-replayed")

    failed, replayed = sink_server.received
    assert ticket["ticket_number"] == replayed.json["data"]["ticket"]["ticket_number"]
    # The replay keeps the delivery id, so the receiver can deduplicate.
    assert replayed.headers["X-Webhook-Delivery"] == failed.headers["X-Webhook-Delivery"] in delivery_url


def test_send_a_test_event_and_watch_it_arrive(page: Any, gateway: Gateway, sink_server: SinkServer) -> None:
    sign_in(page, gateway)
    card = page.locator("#sink-crm")
    card.get_by_label("Test event").select_option("ticket.resolved")
    card.get_by_role("button", name="Send test event").click()
    expect(page.locator("#delivery-status")).to_have_text("delivered")
    expect(page.locator("#attempt-1")).to_contain_text("HTTP 200")
    [received] = sink_server.received
    assert received.json["event"] == "ticket.resolved"


def test_readable_on_a_phone(browser: Any, gateway: Gateway, screenshot: Any) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, gateway)
        expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()
        # Nothing wider than the screen: no sideways scrolling on a phone.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "integrations-phone")
        page.goto(f"{gateway.base_url}/admin/events")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(page, "events-phone")
    finally:
        context.close()


def test_keyboard_alone_signs_in_and_navigates(page: Any, gateway: Gateway) -> None:
    page.goto(f"{gateway.base_url}/admin/signin")
    expect(page.get_by_label("Admin token")).to_be_focused()  # autofocus: type straight away
    page.keyboard.type(gateway.admin_token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Deliveries")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Deliveries", level=1)).to_be_visible()
