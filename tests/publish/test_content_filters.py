"""Content filters at publish: the on-call Slack gets only urgent and high tickets, the
others make no delivery for it (nothing written for it) and are counted per sink; the
filter comes from TOML or the sinks API, and a bad one is refused with its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_config
from gateway.plugins import load_plugins
from gateway.testing import write_config
from gateway.web.app import create_app

ADMIN_TOKEN = "content-filters-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
URGENT_OR_HIGH = {"data.ticket.priority": {"$in": ["high", "urgent"]}}
PRIORITIES = ("low", "medium", "high", "urgent")


def on_call_config(slack_url: str, crm_url: str) -> dict[str, Any]:
    return {
        "gateway": {"admin_token": ADMIN_TOKEN},
        "delivery": {"allow_private_networks": True},
        "sinks": [
            {"name": "on-call", "type": "slack", "url": slack_url, "events": ["ticket.created"],
             "filter": URGENT_OR_HIGH},
            {"name": "crm", "type": "generic_webhook", "url": crm_url, "events": ["ticket.created"]},
        ],
    }


def post_tickets(client: Any, count: int) -> list[dict[str, Any]]:
    tickets = []
    for i in range(count):
        body = {"event": "ticket.create", "data": {
            "subject": f"Ticket {i} ({PRIORITIES[i % 4]})", "message": "Printer on fire",
            "customer_email": f"c{i}@example.com", "priority": PRIORITIES[i % 4]}}
        answer = client.post("/api/webhooks/receive", json=body)
        assert answer.status_code == 201, answer.get_json()
        tickets.append(answer.get_json()["ticket"])
    return tickets


def test_the_on_call_slack_gets_only_urgent_and_high_tickets(make_runtime, recording_sink, gateway_worker):
    with type(recording_sink)() as crm:
        config = on_call_config(recording_sink.url, crm.url)
        runtime = make_runtime(config)
        client = create_app(runtime).test_client()
        tickets = post_tickets(client, 20)

        assert gateway_worker(config, "--burst").wait() == 0
        slack_messages = recording_sink.wait_for(10)
        crm.wait_for(20)

    wanted = {t["ticket_number"] for t in tickets if t["priority"] in ("high", "urgent")}
    assert len(wanted) == 10
    shown = [json.dumps(m.json()) for m in slack_messages]
    assert sorted(n for n in wanted if any(n in text for text in shown)) == sorted(wanted)
    assert not any(t["ticket_number"] in text for t in tickets if t["ticket_number"] not in wanted for text in shown)

    # The other ten made no delivery for the on-call sink: the delivery log has ten.
    listed = client.get("/api/deliveries?sink=on-call&limit=100", headers=AUTH).get_json()["deliveries"]
    assert len(listed) == 10 and {d["status"] for d in listed} == {"delivered"}
    assert len(client.get("/api/deliveries?sink=crm&limit=100", headers=AUTH).get_json()["deliveries"]) == 20

    scraped = client.get("/metrics").get_data(as_text=True)
    assert 'gateway_events_filtered_total{event="ticket.created",sink="on-call"} 10.0' in scraped
    assert 'sink="crm"' not in "\n".join(line for line in scraped.splitlines() if "filtered" in line)


def test_a_filtered_out_event_writes_nothing_for_that_sink(make_runtime, redis):
    runtime = make_runtime(on_call_config("http://127.0.0.1:9/slack", "http://127.0.0.1:9/crm"))
    client = create_app(runtime).test_client()
    [low] = post_tickets(client, 1)
    assert low["priority"] == "low"
    keys = [k.decode() for k in redis.keys("*")]
    assert [k for k in keys if "on-call" in k] == []
    assert any("crm" in k for k in keys)


def test_a_filter_written_in_toml_inline_or_as_its_own_table(tmp_path: Path):
    path = tmp_path / "gateway.toml"
    path.write_text("""
[[sinks]]
name = "on-call"
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/XXXX"
events = ["ticket.created"]
filter = { "data.ticket.priority" = { "$in" = ["high", "urgent"] } }

[[sinks]]
name = "vip"
type = "slack"
url = "https://hooks.slack.com/services/T0/B0/YYYY"
events = ["ticket.created"]

[sinks.filter]
"data.ticket.tags" = "vip"

[sinks.filter.data.ticket]
priority = { "$neq" = "low" }
""", encoding="utf-8")
    settings = load_config(path, load_plugins())
    on_call, vip = settings.sinks
    assert on_call.filter is not None and on_call.filter.spec == URGENT_OR_HIGH
    assert vip.filter is not None
    assert vip.filter.matches({"data": {"ticket": {"tags": ["vip"], "priority": "high"}}})
    assert not vip.filter.matches({"data": {"ticket": {"tags": ["vip"], "priority": "low"}}})


def test_config_check_names_the_path_inside_the_filter(tmp_path: Path):
    config = on_call_config("https://hooks.slack.com/services/T0/B0/X", "https://crm.example.com/hook")
    config["sinks"][0]["filter"] = {"data.ticket.priority": {"$inn": ["high"]}, "$or": {"x": 1}}
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path / "gateway.toml", config), load_plugins())
    assert raised.value.errors == {"sinks[0].filter.data.ticket.priority.$inn": ["Unknown operator."],
                                   "sinks[0].filter.$or": ["Must be a non-empty list of conditions."]}


@pytest.fixture
def api(make_runtime):
    runtime = make_runtime({"gateway": {"admin_token": ADMIN_TOKEN}, "delivery": {"allow_private_networks": True}})
    return create_app(runtime).test_client()


def test_the_sinks_api_takes_shows_changes_and_clears_a_filter(api):
    created = api.post("/api/sinks", headers=AUTH, json={
        "name": "on-call", "type": "slack", "url": "https://hooks.slack.com/services/T0/B0/X",
        "events": ["ticket.created"], "filter": URGENT_OR_HIGH})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["sink"]["filter"] == URGENT_OR_HIGH

    changed = api.patch("/api/sinks/on-call", headers=AUTH, json={"filter": {"data.ticket.priority": "urgent"}})
    assert changed.get_json()["sink"]["filter"] == {"data.ticket.priority": "urgent"}
    assert api.get("/api/sinks/on-call", headers=AUTH).get_json()["sink"]["filter"] == {
        "data.ticket.priority": "urgent"}

    cleared = api.patch("/api/sinks/on-call", headers=AUTH, json={"filter": None})
    assert cleared.get_json()["sink"]["filter"] is None


def test_the_sinks_api_refuses_a_bad_filter_with_its_path(api):
    answer = api.post("/api/sinks", headers=AUTH, json={
        "name": "on-call", "type": "slack", "url": "https://hooks.slack.com/services/T0/B0/X",
        "events": ["ticket.created"],
        "filter": {"data": {"ticket": {"priority": {"$inn": ["high"]}, "score": {"$gt": {"a": 1}}}}}})
    assert answer.status_code == 422
    assert answer.get_json()["fields"] == {"filter.data.ticket.priority.$inn": ["Unknown operator."],
                                           "filter.data.ticket.score.$gt": ["Must be a number or a string."]}
    not_an_object = api.post("/api/sinks", headers=AUTH, json={
        "name": "x", "type": "slack", "url": "https://hooks.slack.com/services/T0/B0/X",
        "events": ["ticket.created"], "filter": "priority == high"})
    assert not_an_object.status_code == 422
    assert list(not_an_object.get_json()["fields"]) == ["filter"]


EVENT = {"event": "ticket.created", "timestamp": "2026-01-15T10:30:00Z",
         "data": {"ticket": {"priority": "high", "tags": ["vip"]}}}


def test_filters_test_answers_match_for_a_given_filter_or_a_sinks(api):
    def match(body):
        answer = api.post("/api/filters/test", headers=AUTH, json=body)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["match"]

    assert match({"filter": URGENT_OR_HIGH, "event": EVENT}) is True
    assert match({"filter": {"data.ticket.priority": "low"}, "event": EVENT}) is False
    assert match({"filter": {}, "event": EVENT}) is True
    # An event name: the catalogue's sample (a ticket.created sample has a ticket with a priority).
    assert match({"filter": {"event": "ticket.created", "data.ticket.priority": {"$exist": True}},
                  "event": "ticket.created"}) is True
    api.post("/api/sinks", headers=AUTH, json={"name": "on-call", "type": "slack", "events": ["*"],
                                               "url": "https://hooks.slack.com/services/T0/B0/X",
                                               "filter": {"data.ticket.tags": "spam"}})
    assert match({"sink": "on-call", "event": EVENT}) is False
    # Nothing was published by testing.
    assert api.get("/api/deliveries", headers=AUTH).get_json()["deliveries"] == []


@pytest.mark.parametrize(("body", "status", "fields"), [
    ({"filter": {"data.ticket.priority": {"$inn": ["high"]}}, "event": EVENT}, 422,
     {"filter.data.ticket.priority.$inn": ["Unknown operator."]}),
    ({"filter": {"$regex": "x"}, "event": EVENT}, 422, None),
    ({"filter": [1], "event": EVENT}, 422, None),
    ({"filter": {}, "event": "no.such.event"}, 422, None),
    ({"filter": {}, "event": 3}, 422, None),
    ({"event": EVENT}, 422, {"(root)": ["Give either filter or sink."]}),
    ({"filter": {}, "sink": "x", "event": EVENT}, 422, None),
    ({"sink": 3, "event": EVENT}, 422, None),
    ({"filter": {}, "event": EVENT, "extra": 1}, 422, {"extra": ["Unknown field."]}),
    ({"sink": "nope", "event": EVENT}, 404, None),
])
def test_filters_test_refuses_bad_requests_clearly(api, body, status, fields):
    answer = api.post("/api/filters/test", headers=AUTH, json=body)
    assert answer.status_code == status, answer.get_json()
    if fields is not None:
        assert answer.get_json()["fields"] == fields


def test_filters_test_needs_the_admin_token(api):
    assert api.post("/api/filters/test", json={"filter": {}, "event": EVENT}).status_code == 401
