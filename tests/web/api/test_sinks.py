"""Sink state over HTTP: state and counts, resume after a 410 pause, test events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table
from support.delivery import drain_queued
from support.plugins import PlainSinkPlugin
from support.servers import Answer, SinkServer

from gateway.events import Event
from gateway.publish.builtin_events import BUILTIN_EVENT_TYPES
from gateway.publish.publisher import publish
from gateway.web.app import create_app

AUTH = {"Authorization": "Bearer admin-token-1"}


@pytest.fixture
def server():
    with SinkServer() as running:
        yield running


@pytest.fixture
def gateway(make_runtime: Any, redis_url: str, tmp_path: Path, server: SinkServer):
    config = engine_config(redis_url, tmp_path, [
        sink_table("hook", server.url, retry_schedule=[], events=["ticket.created"], secret="topsecret")])
    runtime = make_runtime(config, plugins=[PlainSinkPlugin()])
    app = create_app(runtime)
    app.testing = True
    return runtime, app.test_client()


def sinks(client: Any) -> list[dict[str, Any]]:
    response = client.get("/api/sinks", headers=AUTH)
    assert response.status_code == 200
    return response.get_json()["sinks"]


def test_sinks_need_the_admin_token(gateway):
    _, client = gateway
    assert client.get("/api/sinks").status_code == 401
    assert client.post("/api/sinks/hook/resume", headers={"Authorization": "Bearer wrong-token"}).status_code == 403


def test_state_counts_and_resume_after_410(gateway, server):
    runtime, client = gateway
    [state] = sinks(client)
    assert state["name"] == "hook" and state["state"] == "ok"
    assert state["counts"] == {"queued": 0, "in_flight": 0,
                               "last_24h": {"delivered": 0, "retrying": 0, "failed": 0}}
    assert "topsecret" not in client.get("/api/sinks", headers=AUTH).get_data(as_text=True)

    server.answer(Answer(200), Answer(410, b"this hook was removed"))
    for _ in range(2):
        publish(runtime, Event.new("ticket.created", {"ticket": {"id": "t"}}))
    drain_queued(runtime)
    [state] = sinks(client)
    assert state["state"] == "paused" and state["paused_reason"].startswith("HTTP 410 Gone: ")
    assert state["counts"]["last_24h"] == {"delivered": 1, "retrying": 0, "failed": 1}

    publish(runtime, Event.new("ticket.created", {"ticket": {"id": "t"}}))
    assert sinks(client)[0]["counts"]["queued"] == 1  # held while paused

    resumed = client.post("/api/sinks/hook/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.get_json()["sink"]["state"] == "ok"
    drain_queued(runtime)
    [state] = sinks(client)
    assert state["counts"]["queued"] == 0 and state["counts"]["last_24h"]["delivered"] == 2


def test_an_admin_pauses_a_sink_and_resumes_it(gateway, server):
    runtime, client = gateway
    paused = client.post("/api/sinks/hook/pause", headers=AUTH, json={"reason": "CRM maintenance until 14:00"})
    assert paused.status_code == 200
    state = paused.get_json()["sink"]
    assert state["state"] == "paused" and state["paused_reason"] == "CRM maintenance until 14:00"
    publish(runtime, Event.new("ticket.created", {"ticket": {"id": "t"}}))
    drain_queued(runtime)
    assert server.count() == 0 and sinks(client)[0]["counts"]["queued"] == 1  # held, not lost

    again = client.post("/api/sinks/hook/pause", headers=AUTH)  # no body: the default reason, kept as it was
    assert again.status_code == 200 and again.get_json()["sink"]["paused_reason"] == "paused by an admin"
    assert client.post("/api/sinks/hook/resume", headers=AUTH).get_json()["sink"]["state"] == "ok"
    drain_queued(runtime)
    assert server.count() == 1
    actions = [e["action"] for e in client.get("/api/audit", headers=AUTH).get_json()["entries"]]
    assert actions[:3] == ["resume", "pause", "pause"]


@pytest.mark.parametrize("body, status, code", [
    ({"reason": ""}, 422, "validation_failed"),
    ({"reason": "x" * 501}, 422, "validation_failed"),
    ({"why": "typo"}, 422, "validation_failed"),
    ([1], 400, "malformed_json"),
])
def test_a_bad_pause_body_is_a_clear_error_and_pauses_nothing(gateway, body, status, code):
    _, client = gateway
    response = client.post("/api/sinks/hook/pause", headers=AUTH, json=body)
    assert response.status_code == status and response.get_json()["error"] == code
    assert sinks(client)[0]["state"] == "ok"
    assert client.post("/api/sinks/nope/pause", headers=AUTH).status_code == 404


def test_test_event_goes_to_that_sink_only_through_the_normal_path(gateway, server):
    runtime, client = gateway
    response = client.post("/api/sinks/hook/test", headers=AUTH, json={"event": "ticket.escalated"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["event"] == "ticket.escalated" and len(body["delivery_ids"]) == 1
    drain_queued(runtime)
    [received] = server.received
    sample = next(t.sample for t in BUILTIN_EVENT_TYPES if t.name == "ticket.escalated")
    assert received.json["event"] == "ticket.escalated" and received.json["data"] == sample
    assert received.headers["X-Webhook-Delivery"] == body["delivery_ids"][0]

    default = client.post("/api/sinks/hook/test", headers=AUTH)
    assert default.status_code == 202 and default.get_json()["event"] == "ticket.created"


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/api/sinks/nope/test", None, 404, "sink_not_found"),
    ("/api/sinks/nope/resume", None, 404, "sink_not_found"),
    ("/api/sinks/hook/test", {"event": "ticket.exploded"}, 422, "unknown_event"),
    ("/api/sinks/hook/test", ["ticket.created"], 400, "malformed_json"),
    ("/api/sinks/hook/test", {"event": 7}, 400, "malformed_json"),
])
def test_bad_requests_are_clear_json_errors(gateway, path, body, status, code):
    _, client = gateway
    response = client.post(path, headers=AUTH, json=body) if body is not None else client.post(path, headers=AUTH)
    assert response.status_code == status and response.get_json()["error"] == code
