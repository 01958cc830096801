"""The generic webhook's ``body_template``: a CRM gets its own JSON shape, signed over the
rendered bytes; a template that fails fails the delivery once (``template_error``) and a
fixed one delivers it on replay; templates are checked when the sink is saved."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from gateway import ConfigError, DeliveryInfo, Event, SinkContext, TemplateError
from gateway.testing import check_config
from gateway_generic_webhook import GenericWebhookSink

ADMIN = "generic-webhook-admin-token-0123456789"  # as conftest's gateway fixture
AUTH = {"Authorization": f"Bearer {ADMIN}"}
SECRET = "crm-signing-secret"
CRM_TEMPLATE = """{
  "external_id": {{ ticket.id|tojson }},
  "title": {{ (ticket.ticket_number ~ ": " ~ ticket.subject)|tojson }},
  "contact": {"email": {{ ticket.customer_email|tojson }}, "name": {{ ticket.customer_name|tojson }}},
  "urgent": {{ (ticket.priority in ["high", "urgent"])|tojson }},
  "source": {"event": {{ event.event|tojson }}, "at": {{ event.timestamp|tojson }},
             "delivery": {{ delivery.id|tojson }}, "attempt": {{ delivery.attempt }}}
}"""
TICKET = {"subject": "Invoice \"March\" is wrong", "message": "Charged twice.", "customer_email": "ana@bigco.com",
          "customer_name": "Ana Lima", "priority": "urgent"}


def crm_table(url: str = "https://crm.example.com/hooks", **options: Any) -> dict[str, Any]:
    return {"name": "crm", "type": "generic_webhook", "url": url, "events": ["ticket.created"],
            "body_template": CRM_TEMPLATE, **options}


def test_a_crm_gets_its_own_json_shape_signed_over_the_rendered_bytes(gateway, recording_sink):
    client, burst = gateway(recording_sink.url, secret=SECRET, headers={"X-Ticket": "{{ ticket.id }}"},
                            body_template=CRM_TEMPLATE)
    created = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": TICKET})
    assert created.status_code == 201
    ticket = created.get_json()["ticket"]
    burst()

    [received] = recording_sink.requests
    assert received.json() == {
        "external_id": ticket["id"],
        "title": f"{ticket['ticket_number']}: Invoice \"March\" is wrong",
        "contact": {"email": "ana@bigco.com", "name": "Ana Lima"},
        "urgent": True,
        "source": {"event": "ticket.created", "at": received.json()["source"]["at"],
                   "delivery": received.header("X-Webhook-Delivery"), "attempt": 1},
    }
    assert received.header("Content-Type") == "application/json"
    assert received.header("X-Ticket") == ticket["id"]
    expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.header("X-Webhook-Signature") or "", expected)


def test_a_template_error_fails_once_shows_in_the_log_and_a_fixed_template_delivers_on_replay(
        make_client, drain_deliveries, recording_sink):
    client = make_client({"gateway": {"admin_token": ADMIN}, "delivery": {"allow_private_networks": True}})
    broken = '{"title": {{ ticket.subject }}}'  # no |tojson: not JSON once rendered
    created = client.post("/api/sinks", headers=AUTH, json=crm_table(recording_sink.url, body_template=broken))
    assert created.status_code == 201, created.get_json()
    client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": TICKET})

    [attempt] = drain_deliveries(client.application)
    assert (attempt["status"], attempt["outcome"], attempt["error"]["code"]) == ("failed", "error", "template_error")
    assert "not valid JSON" in attempt["error"]["message"] and "|tojson" in attempt["error"]["message"]
    assert recording_sink.requests == []
    delivery_id = attempt["delivery_id"]
    shown = client.get(f"/api/deliveries/{delivery_id}", headers=AUTH).get_json()["delivery"]
    assert shown["status"] == "failed" and shown["attempts"] == 1 and shown["next_attempt_at"] is None
    assert shown["attempt_log"][0]["error"]["code"] == "template_error"

    fixed = client.patch("/api/sinks/crm", headers=AUTH,
                         json={"body_template": '{"title": {{ ticket.subject|tojson }}}'})
    assert fixed.status_code == 200
    assert client.post(f"/api/deliveries/{delivery_id}/replay", headers=AUTH).status_code in (200, 202)
    [again] = drain_deliveries(client.application)
    assert again["status"] == "delivered"
    assert recording_sink.requests[0].json() == {"title": TICKET["subject"]}


@pytest.mark.parametrize(("template", "message"), [
    ('{"x": {{ ticket.subject }', "unexpected '}'"),
    ("{% for x in data %}", "Unexpected end of template"),
    ("{{ ticket|nosuchfilter }}", "No filter named 'nosuchfilter'"),
])
def test_a_template_that_does_not_compile_is_refused_when_saved(make_client, template, message):
    with pytest.raises(ConfigError) as raised:
        check_config({"sinks": [crm_table(body_template=template)]})
    [problem] = raised.value.errors["sinks[0].body_template"]
    assert problem.startswith("Line 1") and message in problem

    client = make_client({"gateway": {"admin_token": ADMIN}})
    answer = client.post("/api/sinks", headers=AUTH, json=crm_table(body_template="{}\n" + template))
    assert answer.status_code == 422
    [problem] = answer.get_json()["fields"]["body_template"]
    assert problem.startswith("Line 2, column ")


def test_headers_may_be_templates_checked_when_saved():
    with pytest.raises(ConfigError) as raised:
        check_config({"sinks": [crm_table(headers={"X-Ticket": "{{ ticket.id"})]})
    assert list(raised.value.errors) == ["sinks[0].headers.X-Ticket.value"]


def make_sink(**options: Any) -> GenericWebhookSink:
    loaded = dict(check_config({"sinks": [crm_table(**options)]}).sinks[0].options)
    return GenericWebhookSink("crm", loaded, SinkContext(None, "gw:", None))  # type: ignore[arg-type]


def test_a_rendered_header_cannot_smuggle_a_line_break():
    sink = make_sink(headers={"X-Subject": "{{ ticket.subject }}"})
    event = Event.new("ticket.created", {"ticket": {"subject": "hi\r\nX-Evil: 1"}})
    with pytest.raises(TemplateError, match="header X-Subject"):
        sink.render(event, sink.targets(event)[0], DeliveryInfo("dlv_1", 1, "crm"))


def test_another_content_type_is_sent_as_rendered():
    sink = make_sink(body_template="Ticket {{ ticket.subject }} ({{ ticket.priority }})", content_type="text/plain")
    event = Event.new("ticket.created", {"ticket": {"subject": "Printer", "priority": "low"}})
    request = sink.render(event, sink.targets(event)[0], DeliveryInfo("dlv_1", 1, "crm"))
    assert request.body == b"Ticket Printer (low)"
    assert request.headers["Content-Type"] == "text/plain"


def test_without_a_template_the_body_is_the_guides_envelope():
    sink = make_sink(body_template=None)
    event = Event.new("ticket.created", {"ticket": {"subject": "Printer"}})
    request = sink.render(event, sink.targets(event)[0], DeliveryInfo("dlv_1", 1, "crm"))
    assert json.loads(request.body) == event.envelope()
