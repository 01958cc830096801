"""Settings → Integrations in headless Chromium, as a new admin does it: against a real
gateway (gunicorn, two web workers), a real worker process and a local receiver. Add a
generic webhook through its generated form and see a ticket delivered, signed with the secret
shown once (checked by the guide's own Node.js verifier); rotate it; edit, disable, delete
with waiting deliveries; Slack; a third-party plugin's type (found through an entry point, as
a pip-installed one is); form errors by their fields; the receive settings' signed curl; the
audit log; CSRF and sign-in on every new form. Screenshots of each page: test-artifacts/admin/."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect
from support.processes import start_worker
from support.servers import Answer, SinkServer, served_gateway

from gateway.testing import wait_until

pytestmark = pytest.mark.browser
TOKEN = "browser-integrations-admin-token-0123456789"
TESTS_DIR = Path(__file__).resolve().parents[1]
PHONE = {"width": 390, "height": 844}
WAIT_S = 30.0
# The guide's Node.js verifier as the console shows it, run on one received request: only
# what the snippet takes as given (an express app, the request) is defined around it.
NODE_HARNESS = """
const received = JSON.parse(process.argv[1]);
let verdict = 'verified';
const express = { raw: () => null };
const app = { post: (path, middleware, handler) => handler(
  { headers: { 'x-webhook-signature': received.signature }, body: Buffer.from(received.body, 'utf8') },
  { status: (code) => { verdict = 'refused ' + code; return { json: () => null }; } }) };
"""


@pytest.fixture
def entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``ticketdesk`` test plugin, installed as far as discovery goes: a dist-info with
    its entry point on the gateway processes' path (not the shared virtualenv's)."""
    dist = tmp_path / "site" / "gateway_ticketdesk_test-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gateway-ticketdesk-test\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gateway]\nticketdesk = support.plugins:ticketdesk_plugin\n")
    path = os.pathsep.join(p for p in (str(tmp_path / "site"), str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)


class Console:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def console(tmp_path: Path, redis_url: str, redis_client: Any, entry_point_plugin: None) -> Iterator[Console]:
    """A gateway with one sink from its config file (read-only in the console) and no other
    (``redis_client`` flushes what earlier tests stored)."""
    config = {"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
              "sinks": [{"name": "ops-archive", "type": "generic_webhook", "events": ["ticket.resolved"],
                         "url": "https://archive.example.com/hooks/support-tickets/very-long-path-segment-0123456789"}]}
    with served_gateway(tmp_path, redis_url, config) as served:
        worker = start_worker(tmp_path / "gateway.toml", tmp_path / "worker.log", plain=False)
        try:
            yield Console(served.url)
        finally:
            worker.stop()


@pytest.fixture
def receiver() -> Iterator[SinkServer]:
    with SinkServer() as server:
        yield server


def sign_in(page: Any, console: Console) -> None:
    page.goto(console.url("/admin/"))
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()


def create_ticket(console: Console, subject: str) -> None:
    body = {"event": "ticket.create", "data": {"subject": subject, "message": "From a browser test.",
                                               "customer_email": "jane.doe@example.com"}}
    response = requests.post(console.url("/api/webhooks/receive"), json=body, timeout=10)
    assert response.status_code == 201, response.text


def guide_verifier_says(page: Any, received: Any) -> str:
    """Run the Node.js verifier shown on the page on a request the receiver got."""
    code = page.locator("pre", has_text="function verifySignature").inner_text()
    doc = json.dumps({"signature": received.headers["X-Webhook-Signature"], "body": received.body.decode()})
    script = NODE_HARNESS + code + "\nconsole.log(verdict);\n"
    run = subprocess.run(["node", "-e", script, doc], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def status_of(curl: str) -> str:
    """Run the curl the page shows, as pasted into a shell; the HTTP status it got."""
    run = subprocess.run(["bash", "-c", curl.rstrip() + " -s -o /dev/null -w '%{http_code}'"], capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def card(page: Any, name: str) -> Any:
    return page.locator(f"#sink-{name}")


def test_add_a_webhook_see_a_ticket_delivered_and_verified_then_rotate(page: Any, console: Console,
                                                                      receiver: SinkServer, screenshot: Any) -> None:
    sign_in(page, console)
    expect(card(page, "ops-archive")).to_contain_text("from gateway.toml")
    expect(card(page, "ops-archive").get_by_role("link", name=re.compile("^Edit"))).to_have_count(0)
    screenshot(page, "integrations-start")

    page.get_by_role("link", name="Add integration").first.click()
    screenshot(page, "integration-types")
    page.get_by_role("link", name=re.compile("^Set up generic_webhook")).click()
    page.locator("#f-name").fill("crm")
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_label("All events").uncheck()
    page.get_by_label("ticket.created").check()
    page.get_by_label("ticket.resolved").check()
    screenshot(page, "integration-form-webhook")
    page.get_by_role("button", name="Add integration").click()

    expect(page.get_by_role("heading", name="crm added")).to_be_visible()
    secret = page.locator("#secret-value").inner_text()
    assert secret.startswith("whsec_")
    expect(page.locator("pre", has_text="function verifySignature")).to_contain_text(secret)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy secret").click()
    expect(page.locator('[data-copy-status="secret-value"]')).to_have_text(re.compile("Copied|Selected"))
    screenshot(page, "integration-secret-once")

    create_ticket(console, "Printer on fire")
    wait_until(lambda: receiver.count() == 1, "the ticket to be delivered", WAIT_S)
    assert guide_verifier_says(page, receiver.received[0]) == "verified"

    page.get_by_role("link", name="Done: back to Integrations").click()
    expect(card(page, "crm")).to_contain_text("1\n")  # delivered in the last 24 h
    expect(page.locator("body")).not_to_contain_text(secret)  # shown once: never again
    page.reload()
    expect(card(page, "crm").get_by_role("link", name=re.compile("delivered"))).to_contain_text("1")
    screenshot(page, "integrations-with-crm")

    card(page, "crm").get_by_role("link", name=re.compile("^Rotate secret")).click()
    page.get_by_label("The old secret keeps signing for").select_option("3600")
    screenshot(page, "integration-rotate")
    page.get_by_role("button", name="Rotate the secret").click()
    new_secret = page.locator("#secret-value").inner_text()
    assert new_secret != secret
    expect(page.locator("body")).to_contain_text("The old secret still signs until")
    screenshot(page, "integration-rotated")
    create_ticket(console, "After the rotation")
    wait_until(lambda: receiver.count() == 2, "the second ticket to be delivered", WAIT_S)
    assert guide_verifier_says(page, receiver.received[1]) == "verified"  # the page shows the new secret's
    page.goto(console.url("/admin/integrations"))
    expect(card(page, "crm")).to_contain_text("the previous secret also signs until")


def test_edit_events_disable_then_delete_with_a_waiting_delivery(page: Any, console: Console,
                                                                 receiver: SinkServer, screenshot: Any) -> None:
    receiver.answer(Answer(status=503))
    sign_in(page, console)
    page.goto(console.url("/admin/integrations/new/generic_webhook"))
    page.locator("#f-name").fill("helpdesk")
    page.get_by_label("Webhook URL").fill(receiver.url)
    page.get_by_text("Advanced: retries").click()
    page.get_by_label("Retry schedule").fill("3600")
    page.get_by_role("button", name="Add integration").click()
    expect(page.get_by_role("heading", name="helpdesk added")).to_be_visible()

    create_ticket(console, "Answered 503, retried in an hour")
    wait_until(lambda: receiver.count() == 1, "the first attempt", WAIT_S)
    page.goto(console.url("/admin/integrations"))
    retrying = card(page, "helpdesk").get_by_role("link", name=re.compile("retrying"))

    def shows_one_retrying() -> bool:
        page.reload()
        return retrying.inner_text().startswith("1")
    wait_until(shows_one_retrying, "the card to count the retrying delivery", WAIT_S)
    screenshot(page, "integrations-retrying")

    card(page, "helpdesk").get_by_role("link", name=re.compile("^Edit")).click()
    page.get_by_label("All events").uncheck()
    page.get_by_label("ticket.escalated").check()
    screenshot(page, "integration-edit")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").first).to_contain_text("helpdesk saved.")
    expect(card(page, "helpdesk")).to_contain_text("ticket.escalated")

    card(page, "helpdesk").get_by_role("button", name=re.compile("^Disable")).click()
    expect(card(page, "helpdesk")).to_contain_text("disabled")
    expect(card(page, "helpdesk").get_by_role("button", name=re.compile("^Enable"))).to_be_visible()

    card(page, "helpdesk").get_by_role("link", name=re.compile("^Delete")).click()
    expect(page.locator("main")).to_contain_text("1 delivery is still waiting")
    screenshot(page, "integration-delete-confirm")
    page.get_by_role("button", name=re.compile("^Delete helpdesk and cancel 1 delivery")).click()
    expect(page.get_by_role("status").first).to_contain_text("helpdesk deleted. 1 waiting delivery was cancelled.")
    expect(page.locator("table tbody tr")).to_have_count(1)
    expect(page.locator("table tbody tr").first).to_contain_text("cancelled")
    screenshot(page, "deliveries-cancelled")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    rows = page.locator("table tbody tr")
    expect(rows.nth(0)).to_contain_text("delete")
    expect(rows.nth(1)).to_contain_text("disable")
    expect(rows.nth(2)).to_contain_text("update")
    expect(rows.nth(3)).to_contain_text("create")
    screenshot(page, "audit-log")


def test_slack_a_third_party_type_and_form_errors_by_their_fields(page: Any, console: Console,
                                                                  screenshot: Any) -> None:
    sign_in(page, console)
    page.goto(console.url("/admin/integrations/new"))
    expect(page.get_by_role("link", name="Set up ticketdesk")).to_be_visible()  # found by its entry point

    page.get_by_role("link", name="Set up slack").click()
    expect(page.get_by_label("Webhook URL")).to_have_attribute("type", "password")
    page.locator("#f-name").fill("slack-support")
    page.get_by_label("Webhook URL").fill("https://hooks.slack.com/services/T000/B000/XXXXXXXX")
    page.get_by_label("Channel").fill("#support")
    page.get_by_label("All events").uncheck()
    page.get_by_label("ticket.escalated").check()
    screenshot(page, "integration-form-slack")
    page.get_by_role("button", name="Add integration").click()
    expect(page.get_by_role("status").first).to_contain_text("slack-support added")
    expect(card(page, "slack-support")).to_contain_text("#support")
    expect(page.locator("main")).not_to_contain_text("XXXXXXXX")

    page.goto(console.url("/admin/integrations/new/ticketdesk"))
    expect(page.get_by_label("Region")).to_have_js_property("tagName", "SELECT")
    expect(page.get_by_label("Api key")).to_have_attribute("type", "password")
    page.locator("#f-name").fill("a name with spaces")
    page.get_by_label("Inbox URL").fill("not a url")
    page.get_by_label("Api key").fill("short")
    page.get_by_label("All events").uncheck()
    page.get_by_label("Queues 1").fill("billing")
    page.get_by_role("button", name="Add another").click()
    page.get_by_label("Queues 3").fill("vip")
    page.get_by_text("Advanced: retries").click()
    page.get_by_label("Timeout").fill("9000")
    page.get_by_role("button", name="Add integration").click()

    expect(page.get_by_role("alert")).to_contain_text("The integration was not saved.")
    expect(page.locator("#field-url .field-errors")).to_have_text("Not a valid URL.")
    expect(page.locator("#field-api_key .field-errors")).to_contain_text("Shorter than minimum length 16.")
    expect(page.locator("#field-name .field-errors")).to_contain_text("Use letters, digits")
    expect(page.locator("#field-events .field-errors")).to_contain_text("Shorter than minimum length 1.")
    expect(page.locator("#field-timeout .field-errors")).to_contain_text("Must be greater than or equal to 0.1")
    expect(page.get_by_label("Inbox URL")).to_have_value("not a url")  # what was typed is kept...
    expect(page.get_by_label("Api key")).to_have_value("")  # ...but a secret is never sent back
    screenshot(page, "integration-form-errors")

    page.locator("#f-name").fill("ticketdesk-eu")
    page.get_by_label("Inbox URL").fill("https://inbox.ticketdesk.example/events")
    page.get_by_label("Api key").fill("td-0123456789abcdef")
    page.get_by_label("ticket.created").check()
    page.get_by_label("Timeout").fill("")
    page.get_by_role("button", name="Add integration").click()
    expect(page.get_by_role("heading", name="ticketdesk-eu added")).to_be_visible()  # it signs: a secret
    page.goto(console.url("/admin/integrations"))
    expect(card(page, "ticketdesk-eu")).to_contain_text("ticketdesk")


def test_receive_settings_give_a_signed_curl_that_works(page: Any, console: Console, screenshot: Any) -> None:
    sign_in(page, console)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Receive").click()
    expect(page.locator("main")).to_contain_text("not set")
    screenshot(page, "receive-not-set")
    page.get_by_role("button", name="Set a secret").click()
    secret = page.locator("#secret-value").inner_text()
    curl = page.locator("pre", has_text="curl -X POST").inner_text()
    assert secret in curl and console.base_url in curl
    screenshot(page, "receive-secret-once")
    assert status_of(curl) == "201"

    page.reload()  # a re-sent form would rotate again: the browser asks; go to the page instead
    page.goto(console.url("/admin/receive"))
    expect(page.locator("main")).not_to_contain_text(secret)
    expect(page.locator("main")).to_contain_text("Requests without a valid X-Webhook-Signature are refused.")
    page.get_by_label("The previous secret stays accepted for").select_option("3600")
    page.get_by_role("button", name="Rotate the secret").click()
    expect(page.locator("main")).to_contain_text("The previous secret is still accepted until")
    assert status_of(curl) == "201"  # signed with the previous secret: still accepted for an hour


NEW_FORMS = ["/admin/integrations/new/generic_webhook", "/admin/integrations/crm/edit",
             "/admin/integrations/crm/disable", "/admin/integrations/crm/enable",
             "/admin/integrations/crm/delete", "/admin/integrations/crm/rotate", "/admin/receive/rotate"]


def test_every_new_form_needs_sign_in_and_its_csrf_token(page: Any, console: Console) -> None:
    for path in NEW_FORMS:
        response = page.request.post(console.url(path), form={"name": "x"}, max_redirects=0)
        assert response.status == 302 and "/admin/signin" in response.headers["location"], path
    sign_in(page, console)
    for path in NEW_FORMS:
        response = page.request.post(console.url(path), form={"name": "x"}, max_redirects=0)
        assert response.status == 400 and "This form has expired" in response.text(), path


def test_the_new_pages_are_readable_on_a_phone(browser: Any, console: Console, screenshot: Any) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, console)
        for path, name in (("/admin/integrations", "integrations-phone-start"),
                           ("/admin/integrations/new", "integration-types-phone"),
                           ("/admin/integrations/new/generic_webhook", "integration-form-phone"),
                           ("/admin/integrations/new/ticketdesk", "integration-form-third-party-phone"),
                           ("/admin/receive", "receive-phone"), ("/admin/audit", "audit-phone")):
            page.goto(console.url(path))
            # Nothing wider than the screen: no sideways scrolling on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
            screenshot(page, name)
    finally:
        context.close()
