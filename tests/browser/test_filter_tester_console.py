"""The integration form's filter tester and template preview in headless Chromium, as a new
admin uses them: against a real gateway (gunicorn, two web workers) and a real worker
process. A Slack-like integration's filter tried on a sample event (does not match, matches,
an invalid operator with its path); a generic webhook's CRM-shaped body template previewed,
broken (line and column), saved, and the delivery's body seen to be the preview's. The same
buttons with JavaScript off answer by reloading the form, keeping what was typed.
Screenshots: test-artifacts/admin/."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser
Gateway = SinkServer = Any  # the conftest's classes, reached through fixtures

FILTER = '{"data.ticket.priority": {"$in": ["high", "urgent"]}}'
SLACK_URL = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXX"
CRM_TEMPLATE = """{
  "external_id": {{ ticket.id|tojson }},
  "title": {{ ticket.subject|tojson }},
  "contact": {"email": {{ ticket.customer_email|tojson }}},
  "urgent": {{ (ticket.priority in ["high", "urgent"])|tojson }},
  "source": "helpdesk"
}"""


@pytest.fixture
def console_sinks() -> list[dict[str, Any]]:
    return []  # a new admin: no integration yet


def sign_in(page: Any, gateway: Gateway) -> None:
    page.goto(f"{gateway.base_url}/admin/")
    page.get_by_label("Admin token").fill(gateway.admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()


def with_priority(page: Any, priority: str) -> None:
    """Change the sample event's ticket priority, as an admin edits the prefilled JSON."""
    box = page.get_by_label("Sample event", exact=True)
    text = box.input_value()
    assert '"priority": ' in text, text
    box.fill(re.sub(r'"priority": "[^"]*"', f'"priority": "{priority}"', text))


def test_a_slack_integrations_filter_tried_on_a_sample_event(page: Any, gateway: Gateway, screenshot: Any) -> None:
    sign_in(page, gateway)
    page.get_by_role("link", name="Add integration").first.click()
    page.get_by_role("link", name=re.compile("^Set up slack")).click()
    form_url = page.url
    page.locator("#f-name").fill("support-alerts")
    page.get_by_label("Webhook URL").fill(SLACK_URL)
    page.get_by_label("Content filter").fill(FILTER)
    answer = page.locator("#try-filter")

    with_priority(page, "low")
    page.get_by_role("button", name="Test filter").click()
    expect(answer).to_contain_text("Does not match: this event would not be delivered.")

    with_priority(page, "high")
    page.get_by_role("button", name="Test filter").click()
    expect(answer).to_contain_text("Matches: this event would be delivered.")
    screenshot(page, "filter-tester-matches")

    page.get_by_label("Content filter").fill('{"data.ticket.priority": {"$inn": ["high", "urgent"]}}')
    page.get_by_role("button", name="Test filter").click()
    expect(answer).to_contain_text("The filter is not valid.")
    expect(answer).to_contain_text("filter.data.ticket.priority.$inn: Unknown operator.")
    screenshot(page, "filter-tester-invalid", phone=True)
    assert page.url == form_url  # answered in place: nothing was submitted or saved

    page.get_by_label("Content filter").fill(FILTER)
    page.get_by_role("button", name="Add integration").click()
    expect(page.locator("#sink-support-alerts")).to_be_visible()
    assert gateway.api("/api/sinks/support-alerts")["sink"]["filter"] == json.loads(FILTER)


def test_a_webhooks_body_template_previewed_broken_and_delivered_as_previewed(
        page: Any, gateway: Gateway, sink_server: SinkServer, screenshot: Any) -> None:
    sign_in(page, gateway)
    page.goto(f"{gateway.base_url}/admin/integrations/new/generic_webhook")
    page.locator("#f-name").fill("crm")
    page.get_by_label("Webhook URL").fill(sink_server.url)
    page.get_by_label("All events").uncheck()
    page.get_by_label("ticket.created").check()
    page.get_by_label("Body template").fill(CRM_TEMPLATE)
    page.get_by_role("button", name="Preview").click()

    answer = page.locator("#try-body_template")
    expect(answer).to_contain_text("Rendered: the body a delivery of this event would send.")
    expect(answer).to_contain_text("Content-Type: application/json")
    sample = json.loads(page.get_by_label("Sample event", exact=True).input_value())
    previewed = json.loads(page.locator("#try-body_template-body").inner_text())
    assert previewed == {"external_id": sample["data"]["ticket"]["id"], "title": sample["data"]["ticket"]["subject"],
                         "contact": {"email": sample["data"]["ticket"]["customer_email"]},
                         "urgent": sample["data"]["ticket"]["priority"] in ("high", "urgent"), "source": "helpdesk"}
    screenshot(page, "template-preview")

    page.get_by_label("Body template").fill(CRM_TEMPLATE.replace("ticket.subject|tojson }}", "ticket.subject|tojson }"))
    page.get_by_role("button", name="Preview").click()
    expect(answer).to_contain_text("Line 3, column")
    expect(answer).to_contain_text("unexpected '}'")
    page.get_by_label("Body template").fill(CRM_TEMPLATE.replace('"helpdesk"', "helpdesk"))
    page.get_by_role("button", name="Preview").click()
    expect(answer).to_contain_text("Line 6, column 13 of the output: The output is not valid JSON")
    screenshot(page, "template-preview-error")

    page.get_by_label("Body template").fill(CRM_TEMPLATE)
    page.get_by_role("button", name="Add integration").click()
    expect(page.get_by_role("heading", name="crm added")).to_be_visible()
    ticket = gateway.create_ticket("Invoice #42 is wrong", email="ann@example.com", priority="urgent")
    received = gateway.wait_until(lambda: sink_server.received, "the ticket delivered to crm")
    assert json.loads(received[0].body) == {"external_id": ticket["id"], "title": "Invoice #42 is wrong",
                                             "contact": {"email": "ann@example.com"}, "urgent": True,
                                             "source": "helpdesk"}


def test_without_javascript_the_buttons_answer_on_the_reloaded_form(browser: Any, gateway: Gateway,
                                                                   screenshot: Any) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        sign_in(page, gateway)
        page.goto(f"{gateway.base_url}/admin/integrations/new/generic_webhook")
        page.locator("#f-name").fill("crm-nojs")
        page.get_by_label("Webhook URL").fill("https://crm.example.com/hooks")
        page.get_by_label("Content filter").fill(FILTER)
        page.get_by_label("Sample of event type").select_option("ticket.resolved")
        page.get_by_role("button", name="Load sample").click()
        expect(page.locator("#try-sample")).to_contain_text("Sample ticket.resolved event loaded.")
        assert json.loads(page.get_by_label("Sample event", exact=True).input_value())["event"] == "ticket.resolved"

        with_priority(page, "low")
        page.get_by_role("button", name="Test filter").click()
        expect(page.locator("#try-filter")).to_contain_text("Does not match")
        # What the admin typed is all still there.
        expect(page.locator("#f-name")).to_have_value("crm-nojs")
        expect(page.get_by_label("Content filter")).to_have_value(FILTER)
        assert '"priority": "low"' in page.get_by_label("Sample event", exact=True).input_value()

        page.get_by_label("Body template").fill('{"title": {{ ticket.subject|tojson }}}')
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#try-body_template")).to_contain_text("Content-Type: application/json")
        assert json.loads(page.locator("#try-body_template-body").inner_text())["title"]
        screenshot(page, "template-preview-no-js")
        # Enter in a text input still saves (the form's first button), it does not test.
        page.locator("#f-name").press("Enter")
        expect(page.get_by_role("heading", name="crm-nojs added")).to_be_visible()
    finally:
        context.close()
