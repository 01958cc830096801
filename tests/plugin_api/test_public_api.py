"""The plugin API's stability promise (docs/writing-plugins.md, "Stability"), held by a test:
every name a plugin was promised is still there, with the members the reference documents,
and every public name is documented."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import gateway
import gateway.testing
from gateway import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"

# What plugins were promised: names may be added, never removed (deprecate first).
PROMISED = {
    "ApiError": ("status", "code", "message", "fields", "headers"),
    "ConfigError": ("errors", "source", "describe"),
    "CreatedTicket": ("ticket", "replayed"),
    "DeliveryInfo": ("id", "attempt", "sink"),
    "DestinationRefused": (),
    "Event": ("id", "name", "timestamp", "data", "envelope", "envelope_bytes"),
    "EventType": ("name", "description", "schema", "sample", "title", "plugin"),
    "Outcome": ("kind", "reason", "not_before", "pause_sink", "delivered", "retry", "give_up", "gone"),
    "OutcomeKind": ("DELIVERED", "RETRY", "GIVE_UP", "GONE"),
    "OutgoingRequest": ("url", "body", "headers", "method", "sign", "json_body"),
    "Response": ("status_code", "headers", "body", "ok", "text", "header"),
    "Sink": ("render", "classify", "targets", "on_gone", "sample_event"),
    "SinkContext": ("key", "sinks", "check_destination", "create_ticket", "ticket_schema"),
    "SinkType": ("name", "options_schema", "factory", "description", "default_rate_limit", "secret_options",
                 "plugin"),
    "Target": ("key", "url", "extra"),
    "RenderFailed": ("code", "message", "describe"),
    "TemplateError": ("message", "line", "column", "where", "describe", "to_json"),
    "PayloadTemplate": ("compile", "render"),
    "render_body": (),
    "template_field": (),
    "template_variables": (),
    "current_context": (),
    "hookimpl": (),
    "iso_z": (),
    "url_field": (),
}
PROMISED_CONTEXT_ATTRIBUTES = ("redis", "key_prefix", "public_url", "event_types")
PROMISED_HOOKS = {
    "register_sink_types": ("register",),
    "register_event_types": ("register",),
    "register_blueprints": ("register",),
    "register_commands": ("cli",),
    "event_published": ("event", "sinks", "context"),
    "delivery_attempted": ("attempt",),
}
PROMISED_TESTING = ("redis_url", "redis_client", "redis", "gateway_config", "gateway_plugins", "app", "client",
                    "make_runtime", "make_client", "recording_sink", "drain_deliveries", "register_plugin",
                    "Reply", "wait_until")


def members(obj: object) -> set[str]:
    """Attributes and methods, dataclass fields, and (for a class whose instances set their
    attributes in ``__init__``, as exceptions do) its constructor's arguments."""
    found = {name for name in dir(obj) if not name.startswith("_")}
    if dataclasses.is_dataclass(obj):
        found |= {field.name for field in dataclasses.fields(obj)}
    if inspect.isclass(obj) and issubclass(obj, Exception):
        found |= set(inspect.signature(obj).parameters)
    return found


@pytest.mark.parametrize("name", sorted(PROMISED))
def test_a_promised_name_is_still_exported_with_its_members(name: str) -> None:
    assert name in gateway.__all__, f"gateway.{name} was promised to plugins"
    obj = getattr(gateway, name)
    missing = [member for member in PROMISED[name] if member not in members(obj)]
    assert missing == [], f"gateway.{name} lost {missing}"


def test_the_context_keeps_its_attributes(redis_client: object) -> None:
    context = gateway.SinkContext(redis_client, "gw:", None)  # type: ignore[arg-type]
    assert all(hasattr(context, attribute) for attribute in PROMISED_CONTEXT_ATTRIBUTES)
    assert context.key("acme", "cursor") == "gw:acme:cursor"
    assert context.sinks() == [] and context.event_types.names() == []


@pytest.mark.parametrize("hook", sorted(PROMISED_HOOKS))
def test_a_promised_hook_keeps_its_arguments(hook: str) -> None:
    spec = getattr(hookspecs, hook, None)
    assert spec is not None and hasattr(spec, "gateway_spec"), f"the {hook} hook was promised to plugins"
    assert set(PROMISED_HOOKS[hook]) <= set(inspect.signature(spec).parameters)


@pytest.mark.parametrize("name", PROMISED_TESTING)
def test_the_testing_helpers_stay(name: str) -> None:
    assert hasattr(gateway.testing, name), f"gateway.testing.{name} was promised to plugin tests"


def test_the_reference_documents_every_public_name() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `(\w+)`", text, re.MULTILINE))
    undocumented = [name for name in gateway.__all__
                    if name not in ("__version__", "hookimpl", "iso_z", "url_field") and name not in headings]
    assert undocumented == [], "add a '### `Name`' section under 'The plugin API reference'"
    for helper in ("hookimpl", "iso_z", "url_field"):
        assert f"`{helper}" in text


def test_every_public_name_has_a_docstring() -> None:
    bare = [name for name in gateway.__all__ if name != "__version__" and not inspect.getdoc(getattr(gateway, name))]
    assert bare == []


def test_nothing_is_promised_that_is_not_exported() -> None:
    # A new public name must be added to PROMISED too: the promise is what this test holds.
    assert set(gateway.__all__) - {"__version__"} == set(PROMISED)
