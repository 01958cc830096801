"""``gateway audit``: who changed which integration, newest first."""

from __future__ import annotations

import json

import click

from gateway.cli.context import cli_runtime, config_option, echo_json, echo_table, json_option
from gateway.integrations import audit


@click.command("audit")
@click.option("--limit", type=click.IntRange(1, audit.MAX_LIMIT), default=50, show_default=True,
              help="How many entries.")
@json_option
@config_option
def audit_command(limit: int, as_json: bool) -> None:
    """The audit log: create, update, enable, disable, delete, rotate, resume, replay; by whom
    (admin token name, or cli); secrets never shown."""
    entries, _ = audit.read(cli_runtime(), limit)
    if as_json:
        echo_json(entries)
        return
    echo_table(["at", "actor", "action", "target", "changes"],
               [[e["at"], e["actor"], e["action"], e["target"], _summary(e["changes"])] for e in entries])


def _summary(changes: dict[str, dict[str, object]]) -> str:
    """``key: from -> to`` per change, on one line."""
    return "; ".join(f"{key}: {json.dumps(c.get('from'))} -> {json.dumps(c.get('to'))}"
                     for key, c in changes.items())


COMMANDS = (audit_command,)
