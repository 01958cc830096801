"""The reference docs keep up with the code: every configuration key and default
(docs/configuration.md), every metric (docs/deployment.md), and the troubleshooting guide's
sections and commands (docs/troubleshooting.md). The plugin guide has its own test
(plugin_api/test_plugin_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TICKET = {"event": "ticket.create", "data": {"subject": "Help", "message": "Please",
                                             "customer_email": "a@example.com"}}


# docs/configuration.md: every configuration key, with its default.

CONFIG_DOC = DOCS / "configuration.md"


def test_every_config_key_is_in_the_configuration_reference():
    from gateway.config import DeliverySection, GatewaySection, SinkCommon, WebSection
    from gateway.plugins import load_plugins

    text = CONFIG_DOC.read_text(encoding="utf-8")
    schemas = {"[gateway]": GatewaySection, "[delivery]": DeliverySection, "[web]": WebSection,
               "[[sinks]]": SinkCommon}
    schemas.update({f'type = "{name}"': sink_type.options_schema
                    for name, sink_type in load_plugins().sink_types.items()
                    if name in ("generic_webhook", "slack", "zapier")})
    missing = [f"{section} {key}" for section, schema in schemas.items() for key in schema().fields
               if f"`{key}`" not in text]
    assert missing == []


def test_the_documented_defaults_are_the_real_ones():
    from gateway.config import DeliverySection, GatewaySection, WebSection

    text = CONFIG_DOC.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", text, re.MULTILINE))
    assert len(rows) >= 15
    for schema in (GatewaySection(), DeliverySection(), WebSection()):
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
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    assert "gateway_queue_depth" in families and "gateway_http_requests" in families
    missing = [name for name in sorted(families) if not re.search(rf"`{name}(_total)?`", text)]
    assert missing == []


# docs/troubleshooting.md mirrors the guide's Troubleshooting, with commands that exist.

TROUBLE_DOC = DOCS / "troubleshooting.md"
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


# docs/events.md: the event catalogue, every system event with its sample as the catalogue has it.

EVENTS_DOC = DOCS / "events.md"


def test_every_catalogued_event_is_in_the_event_catalogue_doc_with_the_real_sample():
    import json

    from gateway.plugins import load_plugins

    text = EVENTS_DOC.read_text(encoding="utf-8")
    catalog = load_plugins().catalog
    builtin = [t for t in catalog if t.plugin == "gateway.publish.builtin_events"]
    assert [t.name for t in builtin if f"`{t.name}`" not in text] == []
    documented = dict(re.findall(r"^### `([\w.]+)`\n.*?```json\n(.*?)\n```", text, re.MULTILINE | re.DOTALL))
    system = [t for t in builtin if t.system]
    assert len(system) == 6 and sorted(documented) == sorted(t.name for t in system)
    for event_type in system:
        assert json.loads(documented[event_type.name]) == event_type.sample, event_type.name
