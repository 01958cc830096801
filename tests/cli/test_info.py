"""The ``gateway`` commands that report and check: ``config check``, ``sign``, ``plugins``,
``events`` and every command's ``--help``; in process (click's runner) and as a real
subprocess, as a user runs them."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from support.configs import write_config
from support.processes import free_port, gateway_command
from support.servers import GUIDE_CURL_BODY

pytestmark = pytest.mark.usefixtures("no_ambient_config")


def sink_table(name: str, url: str = "https://crm.example.com/hooks", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "generic_webhook", "url": url, "events": ["ticket.created"], **extra}


def invoke(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Any:
    """The CLI in-process (click's runner): quicker than a subprocess for most checks."""
    from click.testing import CliRunner

    from gateway.cli import cli

    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


# -- config check -------------------------------------------------------------------------------

def test_config_check_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path / "checked.toml", {"sinks": [sink_table("crm")]})
    result = gateway_command("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("OK: 1 sink ")
    # The same file through --config, GATEWAY_CONFIG, and ./gateway.toml.
    assert invoke("config", "check", "--config", str(path)).stdout.startswith("OK: 1 sink ")
    assert invoke("config", "check", env={"GATEWAY_CONFIG": str(path)}).stdout.startswith("OK: 1 sink ")
    assert invoke("config", "check").stdout.startswith("OK: 0 sinks (built-in defaults)")
    write_config(tmp_path / "gateway.toml", {"sinks": [sink_table("a"), sink_table("b")]})
    assert invoke("config", "check").stdout.startswith("OK: 2 sinks ")


def test_config_check_lists_each_bad_field_by_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gateway.toml", {
        "gateway": {"secret": "${NOT_SET_ANYWHERE_1}", "colour": "red"},
        "sinks": [sink_table("crm"), sink_table("b", url="not a url"), sink_table("crm"),
                  sink_table("d", type="carrier_pigeon"), sink_table("e", events=["ticket.deleted"])],
    })
    result = gateway_command("config", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"Configuration errors in {path.resolve()}:"
    pigeon = [line for line in lines if line.startswith("sinks[3].type: Unknown sink type 'carrier_pigeon'")]
    assert len(pigeon) == 1
    assert set(lines[1:]) - set(pigeon) == {
        "gateway.colour: Unknown field.",
        "gateway.secret: Environment variable NOT_SET_ANYWHERE_1 is not set.",
        "sinks[1].url: Not a valid URL.",
        "sinks[2].name: Duplicate sink name 'crm'.",
        "sinks[4].events: Unknown event 'ticket.deleted'.",
    }


def test_config_check_missing_or_broken_file(tmp_path: Path) -> None:
    missing = invoke("config", "check", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "Cannot read" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    result = invoke("config", "check", str(broken))
    assert result.exit_code == 2 and "(file): Not valid TOML" in result.stderr


def test_config_errors_stop_other_commands_too(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gateway.toml", {"sinks": [sink_table("b", url="nope")]})
    result = invoke("run", "--config", str(path), "--port", str(free_port()))
    assert result.exit_code == 2
    assert "sinks[0].url: Not a valid URL." in result.stderr
    assert not (tmp_path / ".gateway").exists()  # nothing was started


# -- sign ---------------------------------------------------------------------------------------

def test_sign_prints_the_hex_hmac_of_the_exact_bytes(tmp_path: Path) -> None:
    body = GUIDE_CURL_BODY
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    (tmp_path / "body.json").write_bytes(body)
    assert invoke("sign", "--secret", "s3cret", str(tmp_path / "body.json")).stdout == expected + "\n"
    # Real stdin of a real process, as in `gateway sign --secret S < body.json`.
    from_stdin = gateway_command("sign", "--secret", "s3cret", "-", stdin=body)
    assert from_stdin.stdout.decode() == expected + "\n"
    # No newline is added or stripped: a trailing newline is part of what is signed.
    with_newline = invoke("sign", "--secret", "s3cret", stdin=body + b"\n")
    assert with_newline.stdout.strip() == hmac.new(b"s3cret", body + b"\n", hashlib.sha256).hexdigest()


def test_sign_takes_the_secret_from_the_environment_or_the_config(tmp_path: Path) -> None:
    body = b'{"event":"ticket.create"}'
    expected = hmac.new("sécret".encode(), body, hashlib.sha256).hexdigest()
    assert invoke("sign", stdin=body, env={"WEBHOOK_SECRET": "sécret"}).stdout.strip() == expected
    path = write_config(tmp_path / "other.toml", {"gateway": {"secret": "sécret"}})
    assert invoke("sign", "--config", str(path), stdin=body).stdout.strip() == expected
    nothing = invoke("sign", stdin=body)
    assert nothing.exit_code == 2 and "--secret" in nothing.stderr


# -- plugins / events ---------------------------------------------------------------------------

def test_plugins_json_and_table() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["gateway.publish.builtin_events"]["builtin"] is True
    assert plugins["gateway.publish.builtin_events"]["version"]
    assert "ticket.created" in plugins["gateway.publish.builtin_events"]["event_types"]
    assert plugins["generic_webhook"]["sink_types"] == ["generic_webhook"]
    assert plugins["generic_webhook"]["error"] is None and plugins["generic_webhook"]["version"]
    table = invoke("plugins").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "VERSION"]
    assert any(line.split()[0] == "generic_webhook" and "ok" in line.split() for line in table)


def test_events_catalogue() -> None:
    events = json.loads(invoke("events", "--json").stdout)
    assert [e["name"] for e in events] == sorted([
        "ticket.created", "ticket.updated", "ticket.resolved", "ticket.escalated", "ai.response.generated",
        "ai.response.requires_review", "ai.response.approved", "ai.response.rejected", "conversation.added",
        "feedback.received", "sink.circuit_opened", "sink.circuit_closed", "sink.paused", "sink.resumed",
        "delivery.failed", "sink.config_changed"])
    assert all(e["description"] and e["sample"] for e in events)
    table = invoke("events").stdout
    assert "ai.response.rejected" in table and "AI response rejected" in table


def test_every_command_has_help_and_config() -> None:
    top = gateway_command("--help")  # the console entry point, in a fresh process
    assert top.returncode == 0
    for command in ("run", "web", "plugins", "events", "sign", "worker"):
        assert command in top.stdout.decode()
        assert "--config" in invoke(command, "--help").stdout, command
    assert "--config" in invoke("config", "check", "--help").stdout
