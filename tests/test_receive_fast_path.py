"""The receive fast path (gateway.api.receive_fast): it answers well-formed ticket creates
without Flask, exactly as the Flask view would, hands everything else to Flask, and steps
aside when a plugin hooks into requests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Blueprint, abort
from werkzeug.test import Client

from gateway.api.receive_fast import FastReceive
from gateway.signing import hex_signature

URL = "/api/webhooks/receive"
SECRET = "fast-secret"
GOOD = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Smoke everywhere",
                                           "customer_email": "ada@example.com", "customer_name": "Ada",
                                           "priority": "high"}}
CONFIG = {"gateway": {"secret": SECRET}}


def signed(doc: Any, **headers: str) -> dict[str, Any]:
    body = json.dumps(doc).encode()
    return {"data": body, "headers": {"Content-Type": "application/json",
                                      "X-Webhook-Signature": hex_signature(body, SECRET), **headers}}


def flask_only(wsgi_environ: dict[str, Any], start_response: Any) -> Any:
    raise AssertionError("the fast path handed a request to Flask")


def test_a_valid_create_is_answered_without_flask(make_runtime: Any, redis_client: Any) -> None:
    from gateway.app import create_app

    app = create_app(make_runtime(CONFIG))
    layer = FastReceive(app, flask_only)
    response = Client(layer).post(URL, **signed(GOOD, **{"Idempotency-Key": "k-1"}))
    assert response.status_code == 201
    ticket = response.get_json()["ticket"]
    assert ticket["ticket_number"].startswith("TKT-")
    assert response.headers["Location"] == f"/api/tickets/{ticket['id']}"
    assert redis_client.zcard("gw:tickets") == 1
    again = Client(layer).post(URL, **signed(GOOD, **{"Idempotency-Key": "k-1"}))
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["ticket"] == ticket


@pytest.mark.parametrize("kwargs", [
    {"data": b"{}", "headers": {"Content-Type": "application/json", "X-Webhook-Signature": "00"}},
    {"data": b"{}", "headers": {"Content-Type": "text/plain"}},
    signed({"event": "ticket.create", "data": {"subject": ""}}),
    signed({"event": "ticket.delete", "data": {}}),
    signed(GOOD, **{"Idempotency-Key": "x" * 300}),
])
def test_anything_but_a_success_goes_to_flask(make_runtime: Any, redis_client: Any, kwargs: Any) -> None:
    from gateway.app import create_app

    app = create_app(make_runtime(CONFIG))
    seen: list[bytes] = []

    def flask_app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ["wsgi.input"].read())
        return app.wsgi_app.next(environ, start_response)  # type: ignore[attr-defined]

    response = Client(FastReceive(app, flask_app)).post(URL, **kwargs)
    assert response.status_code in (400, 401, 415, 422)
    assert seen == [kwargs["data"]]  # Flask got the whole body, as sent
    assert not redis_client.keys("gw:ticket*")


def answers(client: Any) -> list[tuple[int, set[str], Any]]:
    """Status, header names and body (ids and numbers blanked) of a run of requests."""
    out = []
    for kwargs in (signed(GOOD, **{"Idempotency-Key": "same"}), signed(GOOD, **{"Idempotency-Key": "same"}),
                   signed({"event": "ticket.create", "data": {"subject": "x"}}),
                   {"data": json.dumps(GOOD).encode(), "headers": {"Content-Type": "application/json"}}):
        response = client.post(URL, **kwargs)
        doc = response.get_json()
        for key in ("id", "ticket_number", "created_at"):
            doc.get("ticket", {}).pop(key, None)
        out.append((response.status_code, set(response.headers.keys()) - {"Location"}, doc))
    return out


def test_fast_and_flask_paths_answer_alike(make_runtime: Any, redis_client: Any) -> None:
    from gateway.app import create_app

    fast = create_app(make_runtime(CONFIG))
    fast_answers = answers(fast.test_client())
    redis_client.flushdb()
    slow = create_app(make_runtime(CONFIG))
    slow.before_request(lambda: None)  # any foreign hook sends receives through Flask
    assert answers(slow.test_client()) == fast_answers
    assert [status for status, _, _ in fast_answers] == [201, 200, 422, 401]


def test_a_plugins_request_hook_still_sees_every_receive(make_client: Any, redis_client: Any) -> None:
    guard = Blueprint("ip_allow_list", __name__)

    @guard.before_app_request
    def refuse() -> None:
        abort(403)

    class Plugin:
        from gateway.hookspecs import hookimpl

        @hookimpl
        def register_blueprints(self, register: Any) -> None:
            register(guard)

    client = make_client(CONFIG, plugins=[Plugin()])
    response = client.post(URL, **signed(GOOD))
    assert response.status_code == 403
    assert not redis_client.keys("gw:ticket*")


def test_a_bug_while_storing_is_a_json_500_with_nothing_stored(make_client: Any, redis_client: Any,
                                                                caplog: Any) -> None:
    from marshmallow import Schema

    from gateway.hookspecs import hookimpl
    from gateway.sinks import OutgoingRequest, Sink, SinkType

    class BrokenTargets(Sink):
        def targets(self, event: Any) -> Any:
            raise RuntimeError("a plugin bug")

        def render(self, event: Any, target: Any, delivery: Any) -> OutgoingRequest:
            raise AssertionError("never rendered")

    class Plugin:
        @hookimpl
        def register_sink_types(self, register: Any) -> None:
            register(SinkType(name="broken", options_schema=Schema, factory=BrokenTargets))

    client = make_client({**CONFIG, "sinks": [{"name": "b", "type": "broken", "events": ["ticket.created"]}]},
                         plugins=[Plugin()])
    response = client.post(URL, **signed(GOOD))
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error", "message": "An unexpected error occurred."}
    assert "Traceback" not in response.get_data(as_text=True)
    assert "a plugin bug" in caplog.text  # logged for the operator, with its traceback
    assert not redis_client.keys("gw:ticket*")
