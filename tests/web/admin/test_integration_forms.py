"""Settings → Integrations in the console, through Flask's test client: add an integration
with the form generated from its type's schema (a third party's type included), the secret
shown once and verified by the guide's verifier, edit, disable / enable, delete with waiting
deliveries, rotate, the receive settings and the audit log. Real Redis, real deliveries to a
real local HTTP server. (tests/browser drives the same pages in Chromium.)"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
from typing import Any

import pytest
from support.delivery import drain_queued
from support.plugins import TicketDeskPlugin
from support.servers import Answer, SinkServer

TOKEN = "integration-forms-admin-token-0123456789"
FILE_SINK = "from-file"


def config(url: str) -> dict[str, Any]:
    return {"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
            "sinks": [{"name": FILE_SINK, "type": "generic_webhook", "url": url, "events": ["ticket.resolved"]}]}


def csrf_from(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "page has no CSRF field"
    return match.group(1)


@pytest.fixture
def sink() -> Any:
    with SinkServer() as server:
        yield server


@pytest.fixture
def admin(make_client: Any, sink: SinkServer) -> Any:
    client = make_client(config(sink.url), plugins=[TicketDeskPlugin()])
    form = {"token": TOKEN, "csrf_token": csrf_from(client.get("/admin/signin").text)}
    assert client.post("/admin/signin", data=form).status_code == 302
    return client


def post_form(client: Any, path: str, data: dict[str, Any], page: str | None = None) -> Any:
    token = csrf_from(client.get(page or path).text)
    return client.post(path, data={**data, "csrf_token": token})


def field_errors(page: str, name: str) -> list[str]:
    """The messages shown in the box of input ``name``."""
    match = re.search(rf'id="field-{re.escape(name)}".*?(?:<ul class="field-errors"[^>]*>(.*?)</ul>|</div>)',
                      page, re.DOTALL)
    assert match, f"no field {name} on the page"
    return [html.unescape(m) for m in re.findall(r"<li>(.*?)</li>", match.group(1) or "")]


def pre_blocks(page: str) -> dict[str, str]:
    return {m.group(1): html.unescape(m.group(2)) for m in re.finditer(r'<pre id="([^"]+)"[^>]*>(.*?)</pre>', page,
                                                                       re.DOTALL)}


def add_webhook(client: Any, name: str, url: str, events: list[str], **extra: Any) -> Any:
    return post_form(client, "/admin/integrations/new/generic_webhook",
                     {"name": name, "url": url, "events": events, "enabled": "true", **extra})


def create_ticket(client: Any, subject: str) -> None:
    body = {"event": "ticket.create", "data": {"subject": subject, "message": "Help",
                                               "customer_email": "jane@example.com"}}
    assert client.post("/api/webhooks/receive", json=body).status_code == 201


def test_the_type_picker_lists_every_installed_type_a_third_partys_included(admin: Any) -> None:
    page = admin.get("/admin/integrations/new").text
    for name in ("generic_webhook", "slack", "zapier", "ticketdesk"):
        assert f'href="/admin/integrations/new/{name}"' in page
    assert "Copies tickets to a TicketDesk inbox." in page


def test_a_third_party_type_gets_a_form_from_its_schema(admin: Any) -> None:
    page = admin.get("/admin/integrations/new/ticketdesk").text
    names = re.findall(r'<div class="field[^"]*" id="field-([a-z_]+)"', page)
    # Required options first (in the schema's order), then the others; then Advanced.
    assert names[:3] == ["name", "url", "api_key"]
    assert names[3:8] == ["region", "queues", "priority_floor", "notify_agents", "tags"]
    assert "Inbox URL" in page and "The inbox that takes events." in page
    assert re.search(r'<input id="f-api_key" name="api_key"[^>]*type="password"', page)
    assert re.search(r'<select id="f-region" name="region"', page)
    assert '<option value="apac"' in page
    assert len(re.findall(r'<input type="text" name="queues"', page)) == 2
    assert re.search(r'<input type="checkbox" id="f-notify_agents" name="notify_agents" value="true"\s+checked', page)
    assert re.search(r'<textarea id="f-tags" name="tags"', page)
    assert re.search(r'<input id="f-priority_floor" name="priority_floor"[^>]*type="number"', page)
    # The catalogue's events with their descriptions, and "all events".
    assert 'value="*"' in page and "New ticket created" in page
    assert re.search(r'<details class="advanced"', page) and 'name="retry_schedule"' in page


def test_a_third_party_integration_saves_through_the_store(admin: Any, sink: SinkServer) -> None:
    response = post_form(admin, "/admin/integrations/new/ticketdesk", {
        "name": "desk", "url": sink.url, "api_key": "td-key-0123456789abcdef", "region": "us",
        "queues": ["billing", "", "vip"], "priority_floor": "3", "tags": "team: support\nsource: gateway",
        "events": ["ticket.created"], "enabled": "true", "max_in_flight": "4", "retry_schedule": "5, 60"})
    assert response.status_code == 200, response.text
    stored = admin.get("/api/sinks/desk", headers={"Authorization": f"Bearer {TOKEN}"}).json["sink"]
    assert stored["options"]["region"] == "us" and stored["options"]["queues"] == ["billing", "vip"]
    assert stored["options"]["priority_floor"] == 3 and stored["options"]["notify_agents"] is False
    assert stored["max_in_flight"] == 4 and stored["retry_schedule"] == [5, 60]
    assert "td-key-0123456789abcdef" not in json.dumps(stored)


def test_adding_a_webhook_shows_its_secret_once_and_the_guides_verifier_accepts_a_delivery(
        admin: Any, sink: SinkServer) -> None:
    response = add_webhook(admin, "crm", sink.url, ["ticket.created"])
    assert response.status_code == 200
    blocks = pre_blocks(response.text)
    secret = blocks["secret-value"]
    assert secret.startswith("whsec_")
    assert "shown this once" in response.text
    assert "no-store" in response.headers["Cache-Control"]
    python_verifier = next(code for code in blocks.values() if "def verify_signature" in code)
    assert json.dumps(secret) in python_verifier

    create_ticket(admin, "Printer on fire")
    drain_queued(admin.application.extensions["gateway"])
    arrival = sink.received[-1]
    namespace: dict[str, Any] = {}
    exec(python_verifier, namespace)  # the guide's verifier, as the admin would paste it
    assert namespace["verify_signature"](arrival.body.decode(), arrival.headers["X-Webhook-Signature"],
                                         namespace["WEBHOOK_SECRET"])

    # Never shown again: not on the list, not in the API.
    assert secret not in admin.get("/admin/integrations").text
    assert secret not in admin.get("/api/sinks/crm", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert secret not in admin.get("/admin/integrations/crm/edit").text


def test_slack_has_no_secret_to_show_and_its_url_is_a_password_field(admin: Any) -> None:
    page = admin.get("/admin/integrations/new/slack").text
    assert re.search(r'<input id="f-url" name="url"[^>]*type="password"', page)
    response = post_form(admin, "/admin/integrations/new/slack", {
        "name": "slack-support", "url": "https://hooks.slack.com/services/T000/B000/XXXX", "channel": "#support",
        "events": ["ticket.created", "ticket.escalated"], "enabled": "true"})
    assert response.status_code == 302
    listed = admin.get("/admin/integrations").text
    assert "slack-support added" in listed and "XXXX" not in listed


def test_refusals_show_the_apis_messages_next_to_their_fields(admin: Any) -> None:
    form = {"name": "bad name!", "url": "not a url", "events": [], "retry_schedule": "5, soon",
            "headers": "X-Token: abc\nno colon here", "enabled": "true"}
    response = add_webhook(admin, form.pop("name"), form.pop("url"), form.pop("events"), **form)
    assert response.status_code == 422
    assert field_errors(response.text, "headers") == [
        "Write one 'Name: value' per line ('no colon here' has no colon)."]

    del form["headers"]
    response = add_webhook(admin, "bad name!", "not a url", [], **form)
    assert response.status_code == 422
    api = admin.post("/api/sinks", headers={"Authorization": f"Bearer {TOKEN}"}, json={
        "name": "bad name!", "type": "generic_webhook", "url": "not a url", "events": [],
        "retry_schedule": [5, "soon"]}).json["fields"]
    assert field_errors(response.text, "url") == api["url"]
    assert field_errors(response.text, "name") == api["name"]
    assert field_errors(response.text, "events") == api["events"]
    assert field_errors(response.text, "retry_schedule") == [f"item 2: {m}" for m in api["retry_schedule[1]"]]
    # What was typed is kept; the advanced section opens to show its error.
    assert 'value="not a url"' in response.text and "<details class=\"advanced\" open>" in response.text


def test_a_private_url_is_refused_by_the_ssrf_policy_at_save_time(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}})
    form = {"token": TOKEN, "csrf_token": csrf_from(client.get("/admin/signin").text)}
    client.post("/admin/signin", data=form)
    response = add_webhook(client, "crm", "http://127.0.0.1:9/hooks", ["*"])
    assert response.status_code == 422
    assert field_errors(response.text, "url")[0].startswith("Deliveries there would be refused")


def test_edit_changes_events_and_keeps_a_blank_secret_option(admin: Any, sink: SinkServer) -> None:
    add_webhook(admin, "crm", sink.url, ["ticket.created"], headers="Authorization: Bearer abc")
    page = admin.get("/admin/integrations/crm/edit").text
    assert re.search(r'value="ticket.created" data-event\s+checked', page)
    assert "Bearer abc" not in page  # a secret option is never shown, even to edit it
    response = post_form(admin, "/admin/integrations/crm/edit",
                         {"url": sink.url, "events": ["ticket.created", "ticket.resolved"], "headers": "",
                          "etag": html.unescape(re.search(r'name="etag" value="([^"]+)"', page).group(1))})
    assert response.status_code == 302, re.findall(r"<li>(.*?)</li>", response.text)
    assert "crm saved." in admin.get("/admin/integrations").text
    create_ticket(admin, "Kept headers")
    drain_queued(admin.application.extensions["gateway"])
    assert sink.received[-1].headers["Authorization"] == "Bearer abc"
    entry = admin.get("/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json["entries"][0]
    assert entry["action"] == "update" and set(entry["changes"]) == {"events"}


def test_disable_and_enable(admin: Any, sink: SinkServer) -> None:
    add_webhook(admin, "crm", sink.url, ["ticket.created"])
    assert post_form(admin, "/admin/integrations/crm/disable", {}, "/admin/integrations").status_code == 302
    page = admin.get("/admin/integrations").text
    assert "crm disabled" in page and "badge-disabled" in page and "/admin/integrations/crm/enable" in page
    create_ticket(admin, "Not for a disabled sink")
    drain_queued(admin.application.extensions["gateway"])
    assert sink.received == []
    assert post_form(admin, "/admin/integrations/crm/enable", {}, "/admin/integrations").status_code == 302
    actions = [e["action"] for e in admin.get("/api/audit", headers={"Authorization": f"Bearer {TOKEN}"}).json[
        "entries"]]
    assert actions[:3] == ["enable", "disable", "create"]


def test_delete_says_how_many_deliveries_wait_and_they_end_cancelled(admin: Any, sink: SinkServer) -> None:
    add_webhook(admin, "crm", sink.url, ["ticket.created"])
    create_ticket(admin, "First")
    create_ticket(admin, "Second")
    confirm = admin.get("/admin/integrations/crm/delete").text
    assert "2 deliveries are still waiting" in confirm and "cancels them" in confirm
    response = post_form(admin, "/admin/integrations/crm/delete", {})
    assert response.status_code == 302
    listed = admin.get(response.headers["Location"]).text
    assert "crm deleted. 2 waiting deliveries were cancelled." in listed
    assert listed.count("badge-cancelled") == 2


def test_rotate_shows_the_new_secret_once_and_until_when_the_old_one_signs(admin: Any, sink: SinkServer) -> None:
    first = pre_blocks(add_webhook(admin, "crm", sink.url, ["ticket.created"]).text)["secret-value"]
    assert "3600" in admin.get("/admin/integrations/crm/rotate").text
    response = post_form(admin, "/admin/integrations/crm/rotate", {"overlap": "3600"})
    assert response.status_code == 200
    second = pre_blocks(response.text)["secret-value"]
    assert second != first and second.startswith("whsec_")
    assert "The old secret still signs until" in response.text
    assert "the previous secret also signs until" in admin.get("/admin/integrations").text
    create_ticket(admin, "Signed with the new one")
    drain_queued(admin.application.extensions["gateway"])
    arrival = sink.received[-1]
    assert arrival.headers["X-Webhook-Signature"] == hmac.new(second.encode(), arrival.body, hashlib.sha256).hexdigest()
    # A form sent by hand with an overlap int() refuses gets the default overlap, not a 500.
    assert post_form(admin, "/admin/integrations/crm/rotate", {"overlap": "³"}).status_code == 200


def test_a_config_file_integration_is_marked_and_offers_no_edit(admin: Any) -> None:
    page = admin.get("/admin/integrations").text
    card = page[page.index(f'id="sink-{FILE_SINK}"'):]
    card = card[:card.index('<li class="card"') if '<li class="card"' in card else None]
    assert "from gateway.toml" in card
    assert f"/admin/integrations/{FILE_SINK}/edit" not in card
    refused = admin.get(f"/admin/integrations/{FILE_SINK}/edit")
    assert refused.status_code == 409 and "read-only here" in refused.text


def test_receive_settings_rotate_then_the_signed_sender_gets_in(admin: Any) -> None:
    page = admin.get("/admin/receive").text
    assert "not set" in page and "http://localhost/api/webhooks/receive" in page
    response = post_form(admin, "/admin/receive/rotate", {}, "/admin/receive")
    assert response.status_code == 200
    blocks = pre_blocks(response.text)
    secret = blocks["secret-value"]
    curl = next(code for code in blocks.values() if code.startswith("WEBHOOK_SECRET="))
    assert f"WEBHOOK_SECRET='{secret}'" in curl and "X-Webhook-Signature: $SIGNATURE" in curl
    node = next(code for code in blocks.values() if "fetch(" in code)
    assert json.dumps(secret) in node and '"http://localhost/api/webhooks/receive"' in node

    body = json.dumps({"event": "ticket.create", "data": {"subject": "Signed", "message": "Hi",
                                                          "customer_email": "a@example.com"}}).encode()
    assert admin.post("/api/webhooks/receive", data=body, content_type="application/json").status_code == 401
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    signed = admin.post("/api/webhooks/receive", data=body, content_type="application/json",
                        headers={"X-Webhook-Signature": signature})
    assert signed.status_code == 201
    again = admin.get("/admin/receive").text
    assert secret not in again and "set</span> since" in again

    rotated = post_form(admin, "/admin/receive/rotate", {"overlap": "3600"}, "/admin/receive")
    assert "The previous secret is still accepted until" in rotated.text
    # A form sent by hand with an overlap int() refuses gets the default overlap, not a 500.
    assert post_form(admin, "/admin/receive/rotate", {"overlap": "³"}, "/admin/receive").status_code == 200


def test_the_audit_log_page_says_who_changed_what(admin: Any, sink: SinkServer) -> None:
    assert "Nothing has been changed yet." in admin.get("/admin/audit").text
    secret = pre_blocks(add_webhook(admin, "crm", sink.url, ["ticket.created"]).text)["secret-value"]
    post_form(admin, "/admin/integrations/crm/disable", {}, "/admin/integrations")
    page = admin.get("/admin/audit").text
    assert page.index("disable") < page.index("create")
    assert "<code>sink:crm</code>" in page and "<td data-label=\"Who\">admin</td>" in page
    assert "[hidden]" in page and secret not in page
    assert admin.get("/admin/audit?before=nonsense").status_code == 200
    assert admin.get("/admin/audit?before=³-0").status_code == 200  # digits to isdigit(), not to Redis


NEW_FORMS = [("/admin/integrations/new/generic_webhook", {"name": "x", "url": "https://example.com", "events": "*"}),
             ("/admin/integrations/crm/edit", {"events": "*"}), ("/admin/integrations/crm/disable", {}),
             ("/admin/integrations/crm/enable", {}), ("/admin/integrations/crm/delete", {}),
             ("/admin/integrations/crm/rotate", {}), ("/admin/receive/rotate", {})]


def test_every_new_form_needs_sign_in_and_the_csrf_token(admin: Any, make_client: Any, sink: SinkServer) -> None:
    add_webhook(admin, "crm", sink.url, ["ticket.created"])
    for path, data in NEW_FORMS:
        refused = admin.post(path, data=data)
        assert refused.status_code == 400 and "This form has expired" in refused.text, path
    stranger = make_client(config(sink.url))
    for path, data in NEW_FORMS:
        response = stranger.post(path, data=data)
        assert response.status_code == 302 and "/admin/signin" in response.headers["Location"], path
    for path in ("/admin/integrations/new", "/admin/receive", "/admin/audit", "/admin/integrations/crm/delete"):
        assert stranger.get(path).status_code == 302, path
    assert admin.get("/api/sinks/crm", headers={"Authorization": f"Bearer {TOKEN}"}).json["sink"]["enabled"]


def card_counts(client: Any, sink: str) -> dict[str, tuple[str, str]]:
    """The card's counts: label -> (number, the deliveries link behind it)."""
    page = client.get("/admin/integrations").text
    card = page[page.index(f'id="sink-{sink}"'):]
    card = card[:card.index('<li class="card"') if '<li class="card"' in card else None]
    found = re.findall(r'<a (?:class="[^"]*" )?href="([^"]+)"><strong>([^<]+)</strong>\s*([^<]+?)</a>', card)
    return {label.strip(): (number, html.unescape(link)) for link, number, label in found}


def listed_ids(client: Any, link: str) -> list[str]:
    return re.findall(r'href="/admin/deliveries/(dlv_[0-9a-f]+)"', client.get(link).text)


def test_card_counts_say_what_they_mean_and_link_to_exactly_those(admin: Any, sink: SinkServer) -> None:
    add_webhook(admin, "crm", sink.url, ["ticket.created"], retry_schedule="3600")
    sink.answer(Answer(500), Answer(200))
    create_ticket(admin, "Will retry")
    create_ticket(admin, "Will be delivered")
    drain_queued(admin.application.extensions["gateway"])
    create_ticket(admin, "Still waiting")
    counts = card_counts(admin, "crm")
    assert {label: number for label, (number, _) in counts.items()} == {
        "waiting": "1", "retrying": "1", "in flight": "0", "delivered": "1", "failed finally": "0"}
    assert len(listed_ids(admin, counts["waiting"][1])) == 1
    assert len(listed_ids(admin, counts["retrying"][1])) == 1
    assert listed_ids(admin, counts["in flight"][1]) == []
    assert len(listed_ids(admin, counts["delivered"][1])) == 1
    assert listed_ids(admin, counts["failed finally"][1]) == []
    assert "waiting for their turn" in admin.get(counts["waiting"][1]).text
