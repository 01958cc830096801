"""A plugin's own event type, as a host application publishes it: dates and nested data
travel as JSON, bad data gets one message list per dotted path, and a broken sample is
caught when the plugin registers, naming the plugin."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from marshmallow import Schema, fields

from gateway import EventType, hookimpl

TOKEN = "event-types-admin-token-01234567"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BREACH = {"ticket_id": "t-1", "sla": {"policy": "first-response-4h", "due_at": "2026-03-02T14:30:00Z"},
          "breached_at": "2026-03-02T14:30:09.250Z", "minutes_late": 0}


class Sla(Schema):
    policy = fields.String(required=True)
    due_at = fields.AwareDateTime(required=True)


class SlaBreached(Schema):
    ticket_id = fields.String(required=True)
    sla = fields.Nested(Sla, required=True)
    breached_at = fields.AwareDateTime(required=True)
    minutes_late = fields.Integer(load_default=0)
    note = fields.String(load_default=None, allow_none=True)


class SlaPlugin:
    __name__ = "sla_plugin"

    @hookimpl
    def register_event_types(self, register: Any) -> None:
        register(EventType("sla.breached", "A ticket missed its SLA", SlaBreached, BREACH, title="SLA breached"))


@pytest.fixture
def gateway_plugins() -> list[Any]:
    return [SlaPlugin()]


@pytest.fixture
def gateway_config(recording_sink: Any) -> dict[str, Any]:
    return {"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("crm", events=["sla.breached", "ticket.updated"])]}


def publish(client: Any, event: str, data: Any) -> Any:
    return client.post("/api/events", json={"event": event, "data": data}, headers=AUTH)


def test_an_event_with_dates_is_accepted_and_delivered_as_json(app: Any, client: Any, recording_sink: Any,
                                                                drain_deliveries: Any) -> None:
    response = publish(client, "sla.breached", {**BREACH, "minutes_late": "3"})

    assert response.status_code == 202, response.get_json()
    assert [a["outcome"] for a in drain_deliveries(app)] == ["delivered"]
    data = recording_sink.requests[0].json()["data"]
    # Loaded (checked, "3" became 3, the default filled in), then dumped back to JSON.
    assert data == {"ticket_id": "t-1", "sla": {"policy": "first-response-4h", "due_at": "2026-03-02T14:30:00+00:00"},
                    "breached_at": "2026-03-02T14:30:09.250000+00:00", "minutes_late": 3, "note": None}


@pytest.mark.parametrize(("data", "paths"), [
    ({key: value for key, value in BREACH.items() if key != "sla"}, ["data.sla"]),
    ({**BREACH, "sla": {"policy": "x"}}, ["data.sla.due_at"]),
    ({**BREACH, "sla": {"policy": "x", "due_at": "tomorrow-ish"}, "breached_at": "2026-03-02T14:30:09"},
     ["data.breached_at", "data.sla.due_at"]),
    ({**BREACH, "sla": "late"}, ["data.sla"]),
    ({**BREACH, "extra": 1}, ["data.extra"]),
])
def test_bad_data_is_a_422_with_one_message_list_per_dotted_path(client: Any, data: Any, paths: list[str]) -> None:
    response = publish(client, "sla.breached", data)

    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_failed"
    assert sorted(body["fields"]) == paths
    assert all(isinstance(messages, list) and all(isinstance(m, str) for m in messages)
               for messages in body["fields"].values())


def test_fields_a_schema_includes_as_given_are_kept(app: Any, client: Any, recording_sink: Any,
                                                    drain_deliveries: Any) -> None:
    ticket = {"id": "t-1", "ticket_number": "TKT-2026-001", "subject": "Refund", "status": "open",
              "customer_email": "a@example.com", "assignee": {"name": "Sam", "team": "billing"}}

    assert publish(client, "ticket.updated", {"ticket": ticket}).status_code == 202

    drain_deliveries(app)
    sent = recording_sink.requests[0].json()["data"]["ticket"]
    assert sent["assignee"] == {"name": "Sam", "team": "billing"} and sent["priority"] == "medium"
    assert "updated_at" not in sent  # no default invented for a change time the host did not give


def test_the_catalogue_shows_the_title_and_the_sample_as_live_events_carry_it(client: Any) -> None:
    types = {t["name"]: t for t in client.get("/api/event-types").get_json()["event_types"]}

    breach = types["sla.breached"]
    assert (breach["title"], breach["description"], breach["plugin"]) == ("SLA breached", "A ticket missed its SLA",
                                                                          "sla_plugin")
    assert breach["sample"]["sla"]["due_at"] == "2026-03-02T14:30:00+00:00" and breach["sample"]["note"] is None
    assert types["ticket.created"]["title"] == "New ticket"


class Weird(fields.Field):
    """A field whose dumped form is not JSON (a plugin bug the register-time check catches)."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return {value}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return value


class WeirdSchema(Schema):
    value = Weird(required=True)


@pytest.mark.parametrize(("sample", "schema", "says"), [
    ({"ticket_id": "t", "sla": {"policy": "p"}, "breached_at": "2026-03-02T14:30:09Z"}, SlaBreached,
     "its sample does not match its schema (sla.due_at: Missing data for required field.)"),
    ({**BREACH, "breached_at": dt.datetime(2026, 3, 2, tzinfo=dt.UTC)}, SlaBreached, "its sample is not JSON"),
    ({"value": "x"}, WeirdSchema, "dumps the sample to something that is not JSON"),
])
def test_a_broken_sample_is_refused_when_the_plugin_registers(make_runtime: Any, sample: Any, schema: Any,
                                                              says: str) -> None:
    from gateway.plugins import PluginError

    class Broken:
        __name__ = "broken_events"

        @hookimpl
        def register_event_types(self, register: Any) -> None:
            register(EventType("sla.broken", "Broken", schema, sample))

    with pytest.raises(PluginError) as error:
        make_runtime({}, plugins=[Broken()])

    assert str(error.value).startswith("event type 'sla.broken' registered by broken_events: ")
    assert says in str(error.value)


def test_a_stored_event_is_json(client: Any, redis_client: Any) -> None:
    event_id = publish(client, "sla.breached", BREACH).get_json()["event_id"]

    stored = json.loads(redis_client.get(f"gw:event:{event_id}"))
    assert stored["data"]["breached_at"] == "2026-03-02T14:30:09.250000+00:00"
