"""POST /api/templates/preview: a template rendered against an event exactly as a delivery
would be, or a 422 template_error with the line and column; nothing is sent."""

from __future__ import annotations

import pytest

from gateway.web.app import create_app

ADMIN = "templates-preview-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
EVENT = {"event": "ticket.created", "timestamp": "2026-01-15T10:30:00Z",
         "data": {"ticket": {"id": "t1", "subject": "Printer on fire", "priority": "urgent"}}}


@pytest.fixture
def client(make_runtime):
    runtime = make_runtime({"gateway": {"admin_token": ADMIN}, "sinks": [
        {"name": "crm", "type": "generic_webhook", "url": "https://crm.example.com/hook", "events": ["*"],
         "body_template": '{"t": {{ ticket.subject|tojson }}, "d": {{ delivery.id|tojson }}}'}]})
    return create_app(runtime).test_client()


def preview(client, **body):
    return client.post("/api/templates/preview", headers=AUTH, json=body)


def test_the_rendered_body_comes_back(client):
    answer = preview(client, body_template='{"title": {{ ticket.subject|tojson }}, "n": {{ delivery.attempt }}}',
                     event=EVENT)
    assert answer.status_code == 200
    assert answer.get_json() == {"body": '{"title": "Printer on fire", "n": 1}', "content_type": "application/json",
                                 "json": True}


def test_an_event_name_uses_the_catalogue_sample(client):
    answer = preview(client, body_template="{{ event.event }}: {{ ticket.subject }}", event="ticket.created",
                     content_type="text/plain")
    assert answer.status_code == 200
    assert answer.get_json()["body"].startswith("ticket.created: ")


def test_a_sinks_template_is_used_when_none_is_given(client):
    answer = preview(client, sink="crm", event=EVENT)
    assert answer.get_json()["body"] == '{"t": "Printer on fire", "d": "dlv_preview"}'
    assert preview(client, sink="nope", event=EVENT).status_code == 404


def test_a_syntax_error_is_a_422_with_line_and_column(client):
    answer = preview(client, body_template='{\n  "title": {{ ticket.subject }\n}', event=EVENT)
    assert answer.status_code == 422
    body = answer.get_json()
    assert (body["error"], body["line"], body["column"], body["where"]) == ("template_error", 2, 30, "template")
    assert body["fields"]["body_template"] == [body["message"]]
    assert body["message"].startswith("Line 2, column 30: unexpected '}'")


def test_output_that_is_not_json_points_into_the_output(client):
    body = preview(client, body_template='{"title": {{ ticket.subject }}}', event=EVENT).get_json()
    assert (body["error"], body["where"], body["line"], body["column"]) == ("template_error", "output", 1, 11)
    assert "|tojson" in body["message"]


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
])
def test_escapes_and_huge_loops_are_refused(client, template):
    answer = preview(client, body_template=template, event=EVENT, content_type="text/plain")
    assert answer.status_code == 422
    assert answer.get_json()["error"] == "template_error"


@pytest.mark.parametrize(("body", "field"), [
    ({"event": EVENT}, "body_template"),
    ({"body_template": "x", "event": 3}, "event"),
    ({"body_template": "x", "event": "no.such.event"}, "event"),
    ({"body_template": "x", "event": {"data": []}}, "event.data"),
    ({"body_template": 1, "event": EVENT}, "body_template"),
    ({"body_template": "x", "event": EVENT, "extra": 1}, "extra"),
])
def test_bad_fields_are_clear_422s(client, body, field):
    answer = client.post("/api/templates/preview", headers=AUTH, json=body)
    assert answer.status_code == 422
    assert answer.get_json()["error"] == "validation_failed"
    assert field in answer.get_json()["fields"]


def test_preview_needs_the_admin_token(client):
    assert client.post("/api/templates/preview", json={"body_template": "x", "event": EVENT}).status_code == 401
