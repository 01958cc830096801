"""The receive endpoint is its own WSGI application (gateway.web.receive.ReceiveApp), mounted
beside Flask: it answers every ticket create, well formed or not, with the guide's contract
and the same JSON error bodies as the rest of the API."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.test import Client

from gateway.signing import hex_signature
from gateway.web.receive import ReceiveApp

URL = "/api/webhooks/receive"
SECRET = "receive-secret"
GOOD = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Smoke everywhere",
                                           "customer_email": "ada@example.com", "customer_name": "Ada",
                                           "priority": "high"}}
CONFIG = {"gateway": {"secret": SECRET}}


def signed(doc: Any, **headers: str) -> dict[str, Any]:
    body = json.dumps(doc).encode()
    return {"data": body, "headers": {"Content-Type": "application/json",
                                      "X-Webhook-Signature": hex_signature(body, SECRET), **headers}}


def test_the_receive_app_answers_a_create_on_its_own(make_runtime: Any, redis_client: Any) -> None:
    client = Client(ReceiveApp(make_runtime(CONFIG)))
    response = client.post("/", **signed(GOOD, **{"Idempotency-Key": "k-1"}))
    assert response.status_code == 201
    ticket = response.get_json()["ticket"]
    assert ticket["ticket_number"].startswith("TKT-")
    assert response.headers["Location"] == f"/api/tickets/{ticket['id']}"
    assert redis_client.zcard("gw:tickets") == 1
    again = client.post("/", **signed(GOOD, **{"Idempotency-Key": "k-1"}))
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["ticket"] == ticket


def test_mounted_in_the_app_it_answers_every_outcome_in_json(make_client: Any, redis_client: Any) -> None:
    client = make_client(CONFIG)
    cases = [
        (signed(GOOD), 201, None),
        (signed({"event": "ticket.create", "data": {"subject": "x"}}), 422, "validation_failed"),
        ({"data": json.dumps(GOOD).encode(), "headers": {"Content-Type": "application/json"}}, 401,
         "signature_missing"),
        ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
        (signed({"event": "ticket.delete", "data": {}}), 400, "unknown_event"),
        (signed(GOOD, **{"Idempotency-Key": "x" * 300}), 400, "idempotency_key_invalid"),
    ]
    for kwargs, status, code in cases:
        response = client.post(URL, **kwargs)
        assert response.status_code == status, response.get_json()
        assert response.content_type == "application/json"
        if code is not None:
            assert response.get_json()["error"] == code
    wrong_method = client.get(URL)
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"
    assert wrong_method.get_json()["error"] == "method_not_allowed"
    assert client.post(URL + "/extra", **signed(GOOD)).status_code == 404
    assert redis_client.zcard("gw:tickets") == 1


def test_nested_schema_errors_are_one_message_list_per_dotted_path(make_client: Any) -> None:
    doc = {"event": "ticket.create", "data": {**GOOD["data"], "customer_email": "nope", "priority": "asap"}}
    response = make_client(CONFIG).post(URL, **signed(doc))
    assert response.status_code == 422
    assert response.get_json()["fields"] == {"data.customer_email": ["Not a valid email address."],
                                             "data.priority": ["Must be one of: low, medium, high, urgent."]}


def test_a_bug_while_storing_is_a_json_500_with_nothing_stored(make_client: Any, redis_client: Any,
                                                                caplog: Any) -> None:
    from marshmallow import Schema

    from gateway import OutgoingRequest, Sink, SinkType, hookimpl

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


def test_on_its_own_it_answers_in_ascii_json_as_flask_does_by_default(make_runtime: Any) -> None:
    # Mounted, it follows the Flask app's json.ensure_ascii; on its own, Flask's default (true).
    client = Client(ReceiveApp(make_runtime(CONFIG)))
    response = client.post("/", **signed({**GOOD, "data": {**GOOD["data"], "subject": "Café au lait"}}))
    assert response.status_code == 201
    assert b'"subject":"Caf\\u00e9 au lait"' in response.data
    assert response.get_json()["ticket"]["subject"] == "Café au lait"
