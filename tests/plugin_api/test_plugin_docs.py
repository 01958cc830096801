"""docs/writing-plugins.md keeps up with the hooks and the test fixtures."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import gateway.testing
from gateway import OutgoingRequest, Sink, SinkType, hookimpl, hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"
HOOK_HEADING = re.compile(r"^## ([a-z_]+)\s*$", re.MULTILINE)


def hook_names() -> list[str]:
    return [name for name, obj in vars(hookspecs).items() if hasattr(obj, "gateway_spec")]


def sections() -> dict[str, str]:
    """Text under each ``## heading``, up to the next ``##``."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts}


def test_the_hooks_are_found():
    assert {"register_sink_types", "delivery_attempted"} <= set(hook_names())


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_has_a_section_with_its_signature(hook):
    found = sections()
    assert hook in found, f"docs/writing-plugins.md has no '## {hook}' section"
    signature = inspect.signature(getattr(hookspecs, hook))
    body = found[hook]
    assert f"def {hook}(" in body, f"the '## {hook}' section does not show the hook's signature"
    for parameter in signature.parameters:
        assert re.search(rf"\b{parameter}\b", body), f"'## {hook}' does not mention {parameter!r}"


def test_no_section_documents_a_hook_that_does_not_exist():
    documented = set(HOOK_HEADING.findall(DOC.read_text(encoding="utf-8")))
    assert documented - set(hook_names()) == set()


def test_every_public_fixture_is_documented():
    text = DOC.read_text(encoding="utf-8")
    fixtures = [name for name, obj in vars(gateway.testing).items()
                if hasattr(obj, "_fixture_function_marker") and not name.startswith("_")]
    assert "recording_sink" in fixtures and "drain_deliveries" in fixtures
    missing = [name for name in fixtures if f"`{name}`" not in text]
    assert missing == []


# The documented ways of using register_plugin work as the guide says.

TICKET = {"event": "ticket.create", "data": {"subject": "Help", "message": "Please",
                                             "customer_email": "a@example.com"}}


class Seen:
    def __init__(self):
        self.events = []

    @hookimpl
    def event_published(self, event):
        self.events.append(event.name)


def test_register_plugin_observes_in_an_app_built_before(client, register_plugin):
    seen = register_plugin(Seen())

    assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201

    assert seen.events == ["ticket.created"]


class EchoSink(Sink):
    def render(self, event, target, delivery):
        return OutgoingRequest(url=target.url, body=event.envelope_bytes())


class EchoPlugin:
    @hookimpl
    def register_sink_types(self, register):
        from marshmallow import Schema, fields

        class Options(Schema):
            url = fields.String(required=True)

        register(SinkType(name="echo", options_schema=Options, factory=EchoSink))


def test_register_plugin_adds_sink_types_to_apps_built_after(make_runtime, register_plugin, recording_sink,
                                                              drain_deliveries):
    register_plugin(EchoPlugin())
    runtime = make_runtime({"delivery": {"allow_private_networks": True},
                            "sinks": [recording_sink.sink("echo", type="echo", events=["*"])]})
    from gateway.web.app import create_app

    client = create_app(runtime).test_client()
    client.post("/api/webhooks/receive", json=TICKET)

    assert [a["outcome"] for a in drain_deliveries(runtime)] == ["delivered"]
    assert recording_sink.requests[0].json()["event"] == "ticket.created"


def test_a_registered_plugin_is_gone_in_the_next_test(make_runtime):
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as error:
        make_runtime({"sinks": [{"name": "echo", "type": "echo", "events": ["*"], "url": "http://x.example"}]})
    assert "Unknown sink type 'echo'" in str(error.value)
