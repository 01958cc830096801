"""The integration form's filter tester and template preview, through Flask's test client
(tests/browser drives them in Chromium, with and without the script): a signed-in admin
tries a content filter and a payload template on a sample event before saving. Without the
script the buttons submit the form to its own page, which comes back as the admin left it
with the answer; the script's JSON route gives the same answer. Real Redis; nothing is sent."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from support.console import TOKEN, console_config, csrf_from, sign_in

FILTER = '{"data.ticket.priority": {"$in": ["high", "urgent"]}}'
CRM_TEMPLATE = ('{"title": {{ ticket.subject|tojson }},\n'
                ' "priority": {{ ticket.priority|tojson }},\n'
                ' "source": "helpdesk"}')
NEW_WEBHOOK = "/admin/integrations/new/generic_webhook"
NEW_SLACK = "/admin/integrations/new/slack"


@pytest.fixture
def admin(make_client: Any) -> Any:
    client = make_client(console_config([]))
    assert sign_in(client).status_code == 302
    return client


def sample(priority: str, event: str = "ticket.created") -> str:
    return json.dumps({"event": event, "timestamp": "2026-01-15T10:30:00Z",
                       "data": {"ticket": {"id": "TKT-2026-000001", "subject": "Printer on fire",
                                           "priority": priority}}})


def press(client: Any, page: str, button: str, **fields: Any) -> Any:
    """Submit the form at ``page`` with ``button`` (the no-script way)."""
    form = {"name": "crm", "events": ["ticket.created"], "csrf_token": csrf_from(client.get(page).text),
            "try": button, **fields}
    return client.post(page, data=form)


def answer(page: str, target: str) -> dict[str, Any]:
    """What the answer under the button for ``target`` says: its outcome, text and body."""
    match = re.search(rf'id="try-{re.escape(target)}"[^>]*>(.*?)</div>\s*</div>', page, re.DOTALL)
    assert match, f"no answer region for {target}"
    region = match.group(1)
    outcome = re.search(r'data-outcome="([^"]+)"', region)
    body = re.search(r"<pre[^>]*>(.*?)</pre>", region, re.DOTALL)
    text = html.unescape(re.sub(r"<[^>]+>", " ", region))
    return {"outcome": outcome.group(1) if outcome else None, "text": " ".join(text.split()),
            "body": html.unescape(body.group(1)) if body else None}


def textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea[^>]*name="{re.escape(name)}"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


def test_the_form_has_a_filter_box_and_a_sample_of_the_events_it_subscribes_to(admin: Any) -> None:
    page = admin.get(NEW_SLACK).text
    assert textarea(page, "filter") == ""
    shown = json.loads(textarea(page, "sample_event"))
    assert shown["event"] == "ticket.created" and "ticket" in shown["data"]
    assert re.search(r'<button[^>]*value="filter"[^>]*>Test filter</button>', page)


def test_without_the_script_test_filter_answers_and_keeps_what_was_typed(admin: Any) -> None:
    low = press(admin, NEW_SLACK, "filter", filter=FILTER, sample_event=sample("low"),
                url="https://hooks.slack.com/services/T0/B0/x")
    assert low.status_code == 200
    assert answer(low.text, "filter")["outcome"] == "no_match"
    assert "Does not match" in answer(low.text, "filter")["text"]
    assert textarea(low.text, "filter") == FILTER
    assert json.loads(textarea(low.text, "sample_event"))["data"]["ticket"]["priority"] == "low"
    assert 'value="crm"' in low.text  # the name typed is still there

    high = press(admin, NEW_SLACK, "filter", filter=FILTER, sample_event=sample("high"))
    assert answer(high.text, "filter")["outcome"] == "match"
    assert "Matches" in answer(high.text, "filter")["text"]
    # Nothing was saved by either.
    assert "crm" not in admin.get("/api/sinks", headers={"Authorization": f"Bearer {TOKEN}"}).text


def test_an_invalid_operator_is_shown_with_its_path_inside_the_filter(admin: Any) -> None:
    page = press(admin, NEW_SLACK, "filter", filter='{"data.ticket.priority": {"$inn": ["high"]}}',
                 sample_event=sample("high")).text
    shown = answer(page, "filter")
    assert shown["outcome"] == "error"
    assert "The filter is not valid." in shown["text"]
    assert "filter.data.ticket.priority.$inn: Unknown operator." in shown["text"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"filter": FILTER, "sample_event": '{"event": "ticket.created",\n "data": {'},
     "The sample event is not valid JSON: line 2"),
    ({"filter": FILTER, "sample_event": "[1, 2]"}, "The sample event must be a JSON object"),
    ({"filter": FILTER, "sample_event": '{"data": {"x": NaN}}'}, "NaN and Infinity are not JSON numbers"),
    ({"filter": FILTER, "sample_event": ""}, "The sample event is empty"),
    ({"filter": '{"data.ticket.priority": ', "sample_event": sample("high")}, "The filter is not valid JSON: line 1"),
    ({"filter": "", "sample_event": sample("high")}, "No filter: every event it subscribes to is delivered."),
])
def test_bad_input_to_the_filter_tester_is_a_clear_message(admin: Any, fields: dict[str, str], message: str
                                                          ) -> None:
    response = press(admin, NEW_SLACK, "filter", **fields)
    assert response.status_code == 200
    assert message in answer(response.text, "filter")["text"]


def test_without_the_script_preview_shows_the_rendered_body_and_its_content_type(admin: Any) -> None:
    response = press(admin, NEW_WEBHOOK, "preview:body_template", body_template=CRM_TEMPLATE,
                     sample_event=sample("urgent"), url="https://crm.example.com/hooks")
    shown = answer(response.text, "body_template")
    assert shown["outcome"] == "rendered"
    assert "application/json" in shown["text"]
    assert json.loads(shown["body"]) == {"title": "Printer on fire", "priority": "urgent", "source": "helpdesk"}
    assert textarea(response.text, "body_template") == CRM_TEMPLATE


@pytest.mark.parametrize(("template", "content_type", "message"), [
    ('{"title": {{ ticket.subject|tojson }\n}', "", "Line 1, column 36: unexpected '}'"),
    ('{"title": {{ ticket.subject|tojson }},\n "x": }', "",
     "Line 2, column 7 of the output: The output is not valid JSON"),
    ("{{ 'x' * 300000 }}", "text/plain", "would be larger than 262144 characters"),
    ("", "", "No template: the event's envelope is sent as it is."),
])
def test_a_broken_template_is_shown_with_where_it_broke(admin: Any, template: str, content_type: str,
                                                       message: str) -> None:
    response = press(admin, NEW_WEBHOOK, "preview:body_template", body_template=template,
                     content_type=content_type, sample_event=sample("high"))
    assert response.status_code == 200
    shown = answer(response.text, "body_template")
    assert message in shown["text"], shown


def test_a_text_content_type_is_rendered_as_text(admin: Any) -> None:
    response = press(admin, NEW_WEBHOOK, "preview:body_template", body_template="Ticket {{ ticket.subject }}",
                     content_type="text/plain", sample_event=sample("high"))
    shown = answer(response.text, "body_template")
    assert shown["body"] == "Ticket Printer on fire" and "text/plain" in shown["text"]


def test_a_template_sent_with_a_browsers_line_breaks_is_previewed_and_saved_with_the_admins(admin: Any) -> None:
    typed = CRM_TEMPLATE.replace("\n", "\r\n")
    response = press(admin, NEW_WEBHOOK, "preview:body_template", body_template=typed, sample_event=sample("high"))
    body = answer(response.text, "body_template")["body"]
    assert "\\r" not in body and body == CRM_TEMPLATE.replace("{{ ticket.subject|tojson }}", '"Printer on fire"'
                                                               ).replace("{{ ticket.priority|tojson }}", '"high"')
    form = {"name": "crm", "events": ["ticket.created"], "enabled": "true", "url": "https://crm.example.com/hooks",
            "body_template": typed, "csrf_token": csrf_from(admin.get(NEW_WEBHOOK).text)}
    assert admin.post(NEW_WEBHOOK, data=form).status_code == 200  # the secret's page
    stored = admin.get("/api/sinks/crm", headers={"Authorization": f"Bearer {TOKEN}"}).json["sink"]
    assert stored["options"]["body_template"] == CRM_TEMPLATE


def test_load_sample_fills_the_box_with_the_chosen_events_sample(admin: Any) -> None:
    response = press(admin, NEW_SLACK, "sample", sample_type="ticket.resolved", sample_event="{}")
    assert json.loads(textarea(response.text, "sample_event"))["event"] == "ticket.resolved"
    unknown = press(admin, NEW_SLACK, "sample", sample_type="no.such.event", sample_event="{}")
    assert "Choose an event from the list." in answer(unknown.text, "sample")["text"]


def test_a_sample_sent_back_with_a_browsers_line_breaks_stays_the_same_json(admin: Any) -> None:
    typed = sample("low").replace(", ", ",\r\n  ")
    first = press(admin, NEW_SLACK, "filter", filter=FILTER, sample_event=typed)
    shown = textarea(first.text, "sample_event")
    assert json.loads(shown) == json.loads(typed)
    again = press(admin, NEW_SLACK, "filter", filter=FILTER, sample_event=shown.replace("\n", "\r\n"))
    assert answer(again.text, "filter")["outcome"] == "no_match"


def test_control_and_bidi_characters_are_shown_escaped(admin: Any) -> None:
    event = json.dumps({"event": "ticket.created", "data": {"ticket": {"subject": "exe.\u202etxt\x1b[2J"}}},
                       ensure_ascii=False)
    response = press(admin, NEW_WEBHOOK, "preview:body_template", body_template="{{ ticket.subject }}",
                     content_type="text/plain", sample_event=event)
    assert "\u202e" not in response.text and "\x1b" not in response.text
    assert answer(response.text, "body_template")["body"] == "exe.\\u202etxt\\x1b[2J"
    loaded = press(admin, NEW_SLACK, "sample", sample_type="ticket.created", sample_event=event)
    assert "\u202e" not in loaded.text


def test_the_scripts_route_gives_the_same_answers_as_json(admin: Any) -> None:
    token = csrf_from(admin.get(NEW_WEBHOOK).text)
    url = "/admin/integrations/try/generic_webhook.json"
    low = admin.post(url, data={"csrf_token": token, "try": "filter", "filter": FILTER, "sample_event": sample("low")})
    assert low.status_code == 200 and low.json["outcome"] == "no_match"
    assert 'data-outcome="no_match"' in low.json["html"]
    preview = admin.post(url, data={"csrf_token": token, "try": "preview:body_template",
                                    "body_template": CRM_TEMPLATE, "sample_event": sample("high")})
    assert json.loads(preview.json["body"])["priority"] == "high"
    assert preview.json["content_type"] == "application/json"
    loaded = admin.post(url, data={"csrf_token": token, "try": "sample", "sample_type": "ticket.resolved"})
    assert json.loads(loaded.json["sample"])["event"] == "ticket.resolved"
    # A preview is only for the type's own template options.
    other = admin.post(url, data={"csrf_token": token, "try": "preview:url", "url": "{{ x }}"})
    assert other.json["outcome"] == "error"


def test_csrf_is_required_on_both_ways_in(admin: Any) -> None:
    form = {"name": "crm", "events": ["ticket.created"], "try": "filter", "filter": FILTER,
            "sample_event": sample("high")}
    page = admin.post(NEW_SLACK, data=form)
    assert page.status_code == 400 and "This form has expired" in page.text
    script = admin.post("/admin/integrations/try/slack.json", data=form)
    assert script.status_code == 400
    assert "match" not in (script.get_data(as_text=True))


def test_signed_out_the_scripts_route_is_a_401(make_client: Any) -> None:
    client = make_client(console_config([]))
    response = client.post("/admin/integrations/try/slack.json", data={"try": "filter"})
    assert response.status_code == 401 and response.json["error"] == "unauthorized"


def test_an_unknown_type_is_a_404_not_a_500(admin: Any) -> None:
    token = csrf_from(admin.get(NEW_SLACK).text)
    response = admin.post("/admin/integrations/try/nope.json", data={"csrf_token": token, "try": "filter"})
    assert response.status_code == 404 and response.json["error"] == "not_found"


def test_the_filter_saved_from_the_form_is_the_one_tested_and_shown_when_editing(admin: Any) -> None:
    form = {"name": "crm", "events": ["ticket.created"], "enabled": "true", "filter": FILTER,
            "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "sample_event": sample("high"), "sample_type": "ticket.created",
            "csrf_token": csrf_from(admin.get(NEW_SLACK).text)}
    assert admin.post(NEW_SLACK, data=form).status_code == 302
    stored = admin.get("/api/sinks/crm", headers={"Authorization": f"Bearer {TOKEN}"}).json
    assert stored["sink"]["filter"] == json.loads(FILTER)
    edit = admin.get("/admin/integrations/crm/edit").text
    assert json.loads(textarea(edit, "filter")) == json.loads(FILTER)
    tested = press(admin, "/admin/integrations/crm/edit", "filter", filter=textarea(edit, "filter"),
                   sample_event=sample("low"), etag=re.search(r'name="etag" value="([^"]+)"', edit).group(1))
    assert answer(tested.text, "filter")["outcome"] == "no_match"
    assert re.search(r'name="etag" value="[^"]+"', tested.text)


def test_an_invalid_filter_is_refused_on_save_with_its_path(admin: Any) -> None:
    form = {"name": "crm", "events": ["ticket.created"], "enabled": "true",
            "filter": '{"data.ticket.priority": {"$inn": ["high"]}}',
            "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "csrf_token": csrf_from(admin.get(NEW_SLACK).text)}
    response = admin.post(NEW_SLACK, data=form)
    assert response.status_code == 422
    assert "data.ticket.priority.$inn: Unknown operator." in html.unescape(response.text)
