"""docs/writing-plugins.md keeps up with the hooks and the test fixtures."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import gateway.testing
from gateway import OutgoingRequest, Sink, SinkType, hookimpl, hookspecs

DOC = Path(__file__).resolve().parent.parent / "docs" / "writing-plugins.md"
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
    from gateway.app import create_app

    client = create_app(runtime).test_client()
    client.post("/api/webhooks/receive", json=TICKET)

    assert [a["outcome"] for a in drain_deliveries(runtime)] == ["delivered"]
    assert recording_sink.requests[0].json()["event"] == "ticket.created"


def test_a_registered_plugin_is_gone_in_the_next_test(make_runtime):
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as error:
        make_runtime({"sinks": [{"name": "echo", "type": "echo", "events": ["*"], "url": "http://x.example"}]})
    assert "Unknown sink type 'echo'" in str(error.value)


# docs/configuration.md: every configuration key, with its default.

CONFIG_DOC = DOC.parent / "configuration.md"


def test_every_config_key_is_in_the_configuration_reference():
    from gateway.config import DeliverySection, GatewaySection, SinkCommon
    from gateway.plugins import load_plugins

    text = CONFIG_DOC.read_text(encoding="utf-8")
    schemas = {"[gateway]": GatewaySection, "[delivery]": DeliverySection, "[[sinks]]": SinkCommon}
    schemas.update({f'type = "{name}"': sink_type.options_schema
                    for name, sink_type in load_plugins().sink_types.items()
                    if name in ("generic_webhook", "slack", "zapier")})
    missing = [f"{section} {key}" for section, schema in schemas.items() for key in schema().fields
               if f"`{key}`" not in text]
    assert missing == []


def test_the_documented_defaults_are_the_real_ones():
    from gateway.config import DeliverySection, GatewaySection

    text = CONFIG_DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", text, re.MULTILINE))
    assert len(rows) >= 15
    for schema in (GatewaySection(), DeliverySection()):
        for key, value in schema.load({}).items():
            if key in rows:
                documented = rows[key].strip('"')
                shown = str(value).lower() if isinstance(value, bool) else str(value)
                assert documented.replace(" ", "") == shown.replace(" ", "").removesuffix(".0"), key


def test_every_metric_is_in_the_deployment_guide(make_client):
    from prometheus_client.parser import text_string_to_metric_families

    client = make_client({"sinks": []})
    client.post("/api/webhooks/receive", json=TICKET)
    families = {f.name for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    text = (DOC.parent / "deployment.md").read_text(encoding="utf-8")
    assert "gateway_queue_depth" in families and "gateway_http_requests" in families
    missing = [name for name in sorted(families) if not re.search(rf"`{name}(_total)?`", text)]
    assert missing == []


# docs/troubleshooting.md mirrors the guide's Troubleshooting, with commands that exist.

TROUBLE_DOC = DOC.parent / "troubleshooting.md"
GUIDE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "webhooks-guide.md"


def _normal(text: str) -> str:
    text = re.sub(r"[*`.,()]", " ", text.lower()).replace(" in settings", " ")
    return " ".join(word for word in text.split() if word not in ("the", "a", "your"))


def _guide_troubleshooting() -> dict[str, list[str]]:
    text = GUIDE.read_text(encoding="utf-8").split("## Troubleshooting", 1)[1]
    found = {}
    for block in text.split("### ")[1:]:
        title, body = block.split("\n", 1)
        found[title.strip()] = [line[2:].strip() for line in body.splitlines() if line.startswith("- ")]
    return found


@pytest.mark.skipif(not GUIDE.exists(), reason="the Webhooks Guide is not next to this checkout")
def test_troubleshooting_mirrors_every_section_and_check_of_the_guide():
    guide = _guide_troubleshooting()
    assert len(guide) == 3 and sum(len(v) for v in guide.values()) >= 12
    ours = sections_of(TROUBLE_DOC)
    for title, checks in guide.items():
        assert title in ours, f"no '## {title}' section"
        body = _normal(ours[title])
        missing = [check for check in checks if _normal(check) not in body]
        assert missing == [], f"{title}: {missing}"


def sections_of(path: Path) -> dict[str, str]:
    parts = re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    return {part.split("\n", 1)[0].strip(): part.split("\n", 1)[1] for part in parts}


def _documented_commands(text: str) -> list[list[str]]:
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            for match in re.finditer(r"(?:^|\$\(|&& )\s*gateway ((?:[^#|)&]|&(?!&))*)", line):
                commands.append(shlex.split(match.group(1).strip(), posix=True))
    return commands


def test_every_command_in_the_troubleshooting_guide_exists():
    import click

    from gateway.cli import cli

    commands = _documented_commands(TROUBLE_DOC.read_text(encoding="utf-8"))
    assert len(commands) >= 15
    with click.Context(cli) as ctx:
        for argv in commands:
            shown = "gateway " + " ".join(argv)
            command: click.Command = cli
            params = {opt: p for p in cli.params for opt in p.opts}
            tokens = iter(argv)
            for token in tokens:
                if ">" in token:
                    break  # a shell redirection ends the command
                if token.startswith("-"):
                    param = params.get(token.split("=")[0])
                    assert param is not None, f"{shown}: unknown option {token}"
                    if not getattr(param, "is_flag", False) and "=" not in token:
                        next(tokens, None)
                    continue
                if isinstance(command, click.Group):
                    sub = command.get_command(ctx, token)
                    if sub is None and command is not cli:
                        continue  # an argument of a group that also runs without a subcommand
                    assert sub is not None, f"{shown}: no command {token!r}"
                    command = sub
                    params.update({opt: p for p in command.params for opt in p.opts})
