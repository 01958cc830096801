"""``gateway sinks add|edit|enable|disable|rotate-secret|show|export|rm`` and ``gateway audit``:
the same store, checks and audit log as the API, from the command line (actor ``cli``),
on a real Redis; a running process sees each change (here: a runtime built before it)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.config import parse_config
from gateway.plugins import load_plugins
from gateway.runtime import Runtime
from gateway.testing import write_config


@pytest.fixture
def config(redis_client: Any, redis_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "gateway.toml", {
        "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"),
                    "admin_token": "cli-test-admin-token-0123456789abcdef"},
        "delivery": {"allow_private_networks": True},
        "sinks": [{"name": "filed", "type": "generic_webhook", "url": "https://example.com/filed",
                   "events": ["*"]}]})


def gateway(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_a_sink_added_edited_rotated_and_removed_from_the_command_line(config: Path) -> None:
    running = Runtime.from_config(config)  # a process started before any of it
    assert set(running.sinks) == {"filed"}

    added = gateway(config, "sinks", "add", "crm", "--type", "generic_webhook", "--events",
                    "ticket.created,ticket.resolved", "--set", "url=https://crm.example.com/hooks/support",
                    "--set", "max_in_flight=5", "--set", 'headers={X-Tenant = "acme"}')
    assert added.exit_code == 0, added.output
    secret = re.search(r"(whsec_\S+)", added.output).group(1)
    assert running.refresh().configs["crm"].max_in_flight == 5
    assert running.sink_config("crm").signing_secrets() == (secret,)

    shown = json.loads(gateway(config, "sinks", "show", "crm", "--json").output)
    assert (shown["source"], shown["events"], shown["options"]["headers"]) == (
        "api", ["ticket.created", "ticket.resolved"], {"X-Tenant": "[hidden]"})
    assert secret not in json.dumps(shown)
    text = gateway(config, "sinks", "show", "crm").output
    assert "source:           api" in text and secret not in text

    edited = gateway(config, "sinks", "edit", "crm", "--events", "*", "--unset", "max_in_flight")
    assert edited.exit_code == 0 and "updated" in edited.output
    assert running.refresh().configs["crm"].events == ("*",)
    assert running.sink_config("crm").max_in_flight == 10  # back to [delivery]'s default

    assert gateway(config, "sinks", "disable", "crm").exit_code == 0
    running.refresh()
    assert running.subscribers("ticket.created") == (running.sink_config("filed"),)
    assert gateway(config, "sinks", "enable", "crm").exit_code == 0

    rotated = gateway(config, "sinks", "rotate-secret", "crm")
    new = rotated.stdout.strip()
    assert rotated.exit_code == 0 and new.startswith("whsec_") and new != secret
    assert running.refresh().configs["crm"].signing_secrets() == (new, secret)

    listed = gateway(config, "sinks").output
    assert re.search(r"crm\s+generic_webhook\s+api\s+yes\s+ok", listed)
    assert re.search(r"filed\s+generic_webhook\s+config", listed)

    removed = gateway(config, "sinks", "rm", "crm")
    assert removed.exit_code == 0 and "deleted" in removed.output
    assert "crm" not in running.refresh().configs

    entries = json.loads(gateway(config, "audit", "--json").output)
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("cli", "delete"), ("cli", "rotate"), ("cli", "enable"), ("cli", "disable"), ("cli", "update"),
        ("cli", "create")]
    assert secret not in json.dumps(entries) and new not in json.dumps(entries)
    table = gateway(config, "audit").output
    assert "cli" in table and "rotate" in table and "sink:crm" in table


def test_bad_input_names_the_field_and_stores_nothing(config: Path) -> None:
    bad = gateway(config, "sinks", "add", "crm", "--type", "generic_webhook", "--events", "ticket.nope",
                  "--set", "url=not a url", "--set", "max_in_flight=0")
    assert bad.exit_code == 1
    assert "events: Unknown event 'ticket.nope'." in bad.output
    assert "url: Not a valid URL." in bad.output
    assert "max_in_flight: Must be greater than or equal to 1" in bad.output
    assert json.loads(gateway(config, "audit", "--json").output) == []
    for args in (("sinks", "rm", "filed"), ("sinks", "edit", "filed", "--events", "*"),
                 ("sinks", "rotate-secret", "filed")):
        refused = gateway(config, *args)
        assert refused.exit_code == 1 and "config file" in refused.output, args
    assert gateway(config, "sinks", "rm", "nope").exit_code == 1
    assert gateway(config, "sinks", "add", "x", "--type", "slack", "--events", "*", "--set", "oops").exit_code == 2


def test_export_writes_the_stored_sinks_as_toml_with_secrets_as_placeholders(config: Path) -> None:
    gateway(config, "sinks", "add", "crm", "--type", "generic_webhook", "--events", "ticket.created",
            "--set", "url=https://crm.example.com/hook", "--set", 'headers={X-Token = "header-secret"}')
    gateway(config, "sinks", "add", "slack-support", "--type", "slack", "--events", "ticket.escalated",
            "--set", "url=https://hooks.slack.com/services/T0/B0/slacksecretpath", "--set", "channel=#support")

    exported = gateway(config, "sinks", "export").output

    assert "whsec_" not in exported and "header-secret" not in exported and "slacksecretpath" not in exported
    doc = tomllib.loads(exported)
    crm, slack = doc["sinks"]
    assert crm["secret"] == "${CRM_SECRET}" and crm["headers"] == {"X-Token": "${CRM_HEADERS_X_TOKEN}"}
    assert slack["url"] == "${SLACK_SUPPORT_URL}" and slack["channel"] == "#support"
    for name in ("CRM_SECRET", "CRM_HEADERS_X_TOKEN", "SLACK_SUPPORT_URL"):
        assert f"#   {name}" in exported
    # The file it makes is a valid config once the variables are set.
    env = {"CRM_SECRET": "s3cret", "CRM_HEADERS_X_TOKEN": "t", "SLACK_SUPPORT_URL": "https://hooks.slack.com/x"}
    settings = parse_config(doc, load_plugins(), env=env)
    assert [s.name for s in settings.sinks] == ["crm", "slack-support"]
