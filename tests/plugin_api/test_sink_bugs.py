"""A sink whose own code raises has a bug that no retry fixes: the delivery fails at once
with the exception's type and message (secrets hidden), the traceback is logged at DEBUG,
a replay after the fix delivers it, and a plugin's test sees its own exception."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from marshmallow import Schema

from gateway import OutgoingRequest, Sink, SinkType, hookimpl, url_field

TOKEN = "sink-bugs-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TICKET = {"event": "ticket.create", "data": {"subject": "Help", "message": "Please", "customer_email": "a@example.com"}}
SECRET = "s3cret-signing-key"


class Options(Schema):
    url = url_field(required=True)


class FlakySink(Sink):
    """Renders fine once ``fixed`` is set; until then reads an option that does not exist."""

    fixed = False

    def render(self, event: Any, target: Any, delivery: Any) -> OutgoingRequest:
        if not FlakySink.fixed:
            raise KeyError(f"template_for_{event.name} (signing with {SECRET})")
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(),
                               headers={"Content-Type": "application/json"})


class BadClassifySink(FlakySink):
    fixed = True

    def classify(self, response: Any, target: Any) -> Any:
        return {"status": response.status_code}["state"]


class BuggyPlugin:
    __name__ = "buggy"

    @hookimpl
    def register_sink_types(self, register: Any) -> None:
        register(SinkType(name="flaky", options_schema=Options, factory=FlakySink))
        register(SinkType(name="bad_classify", options_schema=Options, factory=BadClassifySink))


@pytest.fixture
def gateway_plugins() -> list[Any]:
    FlakySink.fixed = False
    return [BuggyPlugin()]


@pytest.fixture
def gateway_config(recording_sink: Any) -> dict[str, Any]:
    # A long schedule: a render error must not wait through it.
    return {"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("flaky", type="flaky", events=["ticket.created"], secret=SECRET,
                                          retry_schedule=[60, 600, 3600])]}


def test_a_render_error_fails_the_delivery_at_once_and_says_what_was_raised(app: Any, client: Any,
                                                                            drain_deliveries: Any) -> None:
    client.post("/api/webhooks/receive", json=TICKET)

    [attempt] = drain_deliveries(app, raise_sink_errors=False)

    assert (attempt["status"], attempt["outcome"], attempt["next_attempt_at"]) == ("failed", "error", None)
    assert attempt["error"]["code"] == "render_error"
    message = attempt["error"]["message"]
    assert message.startswith("The sink raised KeyError: ") and "template_for_ticket.created" in message
    assert SECRET not in message and "[hidden]" in message
    shown = client.get(f"/api/deliveries/{attempt['delivery_id']}", headers=AUTH).get_json()["delivery"]
    assert shown["status"] == "failed" and shown["last_error"].startswith("render_error: The sink raised KeyError")


def test_the_traceback_is_logged_at_debug(app: Any, client: Any, drain_deliveries: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    client.post("/api/webhooks/receive", json=TICKET)

    with caplog.at_level(logging.DEBUG, logger="gateway.delivery"):
        drain_deliveries(app, raise_sink_errors=False)

    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "gateway.delivery"]
    assert "raised while rendering" in warning.getMessage() and "KeyError" in warning.getMessage()
    [debug] = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert debug.exc_info[0] is KeyError and "render" in debug.getMessage()


def test_a_replay_after_the_fix_delivers(app: Any, client: Any, recording_sink: Any, drain_deliveries: Any) -> None:
    client.post("/api/webhooks/receive", json=TICKET)
    [failed] = drain_deliveries(app, raise_sink_errors=False)

    FlakySink.fixed = True
    replay = client.post(f"/api/deliveries/{failed['delivery_id']}/replay", headers=AUTH)

    assert replay.status_code in (200, 202)
    [again] = drain_deliveries(app)
    assert (again["delivery_id"], again["outcome"]) == (failed["delivery_id"], "delivered")
    assert recording_sink.requests[0].json()["event"] == "ticket.created"


def test_a_classify_error_fails_at_once_too(make_client: Any, recording_sink: Any, drain_deliveries: Any) -> None:
    client = make_client({"delivery": {"allow_private_networks": True},
                          "sinks": [recording_sink.sink("picky", type="bad_classify", events=["*"],
                                                        retry_schedule=[60])]}, plugins=[BuggyPlugin()])
    client.post("/api/webhooks/receive", json=TICKET)

    [attempt] = drain_deliveries(client.application, raise_sink_errors=False)

    assert (attempt["status"], attempt["status_code"]) == ("failed", 200)
    assert attempt["error"] == {"code": "classify_error",
                                "message": "The sink raised KeyError: 'state' while classifying the response."}


def test_a_plugins_test_fails_on_the_plugins_own_exception(app: Any, client: Any, drain_deliveries: Any) -> None:
    client.post("/api/webhooks/receive", json=TICKET)

    with pytest.raises(KeyError) as raised:
        drain_deliveries(app)

    assert "template_for_ticket.created" in str(raised.value)
    assert raised.traceback[-1].name == "render"  # the failing line is the plugin's own
    assert any("raised by sink 'flaky' in render()" in note for note in raised.value.__notes__)
