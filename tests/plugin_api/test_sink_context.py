"""What the core hands a plugin through its context: its sinks, the event catalogue, and in
a plugin's own endpoint the same context through ``current_context()`` (no globals)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, jsonify
from marshmallow import Schema

from gateway import ApiError, Event, OutgoingRequest, Sink, SinkType, current_context, hookimpl, url_field


class Options(Schema):
    url = url_field(required=True)


class TitledSink(Sink):
    """Sends the event type's title, read from the catalogue on its context."""

    def render(self, event: Event, target: Any, delivery: Any) -> OutgoingRequest:
        title = self.context.event_types.get(event.name).title
        return OutgoingRequest(url=target.url, body=OutgoingRequest.json_body({"title": title}))


bp = Blueprint("context_probe", __name__)


@bp.get("/api/probe/<kind>")
def probe(kind: str) -> Any:
    context = current_context()
    sinks = context.sinks(kind)
    if not sinks:
        raise ApiError(404, "no_such_sinks", f"No {kind} sink.", {"kind": [f"No sink of type {kind!r}."]})
    return jsonify({"sinks": [s.name for s in sinks], "enabled": [s.options["enabled"] for s in sinks],
                    "events": context.event_types.names()[:2], "key": context.key("probe", kind)})


class ProbePlugin:
    __name__ = "probe_plugin"

    @hookimpl
    def register_sink_types(self, register: Any) -> None:
        register(SinkType(name="titled", options_schema=Options, factory=TitledSink))

    @hookimpl
    def register_blueprints(self, register: Any) -> None:
        register(bp)


@pytest.fixture
def gateway_plugins() -> list[Any]:
    return [ProbePlugin()]


@pytest.fixture
def gateway_config(recording_sink: Any) -> dict[str, Any]:
    return {"delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("one", type="titled", events=["*"]),
                      recording_sink.sink("hook", events=["*"]),
                      recording_sink.sink("two", type="titled", events=["*"], enabled=False)]}


def test_a_plugins_endpoint_finds_its_sinks_through_current_context(client: Any) -> None:
    found = client.get("/api/probe/titled").get_json()

    assert found == {"sinks": ["one", "two"], "enabled": [True, False],
                     "events": ["ai.response.approved", "ai.response.generated"], "key": "gw:probe:titled"}


def test_an_api_error_from_a_plugin_is_json_with_flat_fields(client: Any) -> None:
    response = client.get("/api/probe/nothing")

    assert response.status_code == 404
    assert response.get_json() == {"error": "no_such_sinks", "message": "No nothing sink.",
                                   "fields": {"kind": ["No sink of type 'nothing'."]}}


def test_every_sink_shares_the_processes_context(app: Any) -> None:
    runtime_context = current_context_of(app)
    assert {s.name for s in runtime_context.sinks()} == {"one", "hook", "two"}
    assert all(sink.context is runtime_context for sink in runtime_context.sinks())


def test_a_sink_reads_titles_from_the_catalogue(app: Any, client: Any, recording_sink: Any,
                                                drain_deliveries: Any) -> None:
    client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": "Help", "message": "Please", "customer_email": "a@example.com"}})

    drain_deliveries(app)

    assert {"title": "New ticket"} in [r.json() for r in recording_sink.requests]


def test_current_context_outside_a_request_says_where_it_works() -> None:
    with pytest.raises(RuntimeError, match="register_blueprints"):
        current_context()


def current_context_of(app: Any) -> Any:
    with app.test_request_context("/"):
        return current_context()


def test_apierror_flattens_nested_marshmallow_messages() -> None:
    error = ApiError(422, "validation_failed", "Bad.", {"data": {"sla": {"due_at": ["Not a valid datetime."]}},
                                                        "_schema": ["Give one of a or b."]})
    assert error.body()["fields"] == {"data.sla.due_at": ["Not a valid datetime."], "(root)": ["Give one of a or b."]}


def test_a_plugins_endpoint_sees_sinks_changed_through_the_sinks_api_in_another_process(
        make_client: Any, gateway_config: dict[str, Any], gateway_plugins: list[Any], recording_sink: Any) -> None:
    # Two web processes on one Redis: a sink created through one is a sink of the other's
    # plugin endpoints at once, and so is its deletion.
    config = {**gateway_config, "gateway": {"admin_token": "context-admin-token-0123456789ab"}}
    first, second = make_client(config, gateway_plugins), make_client(config, gateway_plugins)
    assert second.get("/api/probe/titled").get_json()["sinks"] == ["one", "two"]  # its view is loaded
    admin = {"Authorization": "Bearer context-admin-token-0123456789ab"}
    created = first.post("/api/sinks", json=recording_sink.sink("three", type="titled", events=["*"]), headers=admin)
    assert created.status_code == 201, created.get_json()

    assert second.get("/api/probe/titled").get_json()["sinks"] == ["one", "two", "three"]
    assert first.delete("/api/sinks/three", headers=admin).status_code == 204
    assert second.get("/api/probe/titled").get_json()["sinks"] == ["one", "two"]
