"""``gateway plugins``, ``gateway events``, ``gateway config check`` and ``gateway sign``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from gateway.cli.context import cli_plugins, cli_settings, config_option, echo_json, echo_table
from gateway.config import Settings
from gateway.redact import without_password
from gateway.runtime import durability_of
from gateway.signing import hex_signature
from gateway.storage.connection import is_sentinel_url, parse_sentinel_url, redis_url_for
from gateway.storage.survey import survey_redis

REDIS_PROBLEM_EXIT = 1


def _abbreviate(names: Sequence[str], keep: int = 3) -> str:
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", +{len(names) - keep} more"


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def plugins_command(as_json: bool) -> None:
    """List loaded plugins: version, sink types, event types, load errors."""
    infos = cli_plugins().plugin_list()
    if as_json:
        echo_json([info.to_json() for info in infos])
        return
    echo_table(["name", "version", "sink types", "event types", "status"],
               [[i.name, i.version or "-", ", ".join(i.sink_types) or "-", _abbreviate(i.event_types) or "-",
                 "failed" if i.error else "ok"] for i in infos])
    for info in infos:
        if info.error:
            click.echo(f"\n{info.name} failed to load: {info.error}")


@click.command("events")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with sample payloads) instead of a table.")
@config_option
def events_command(as_json: bool) -> None:
    """List the event catalogue: every event a sink can subscribe to."""
    catalog = cli_plugins().catalog
    if as_json:
        echo_json([{"name": t.name, "title": t.title, "description": t.description, "plugin": t.plugin,
                    "sample": t.sample} for t in catalog])
        return
    echo_table(["event", "description", "plugin"], [[t.name, t.description, t.plugin] for t in catalog])


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--offline", is_flag=True, help="Only validate the file; do not contact Redis or the sentinels.")
@config_option
def config_check(file: str | None, offline: bool) -> None:
    """Validate the configuration (FILE, else --config, else the usual places), then report
    what the configured Redis looks like: sentinels, master, replicas, persistence, and
    whether the durability setting can be met.
    Exit 0 when all is well; 2 listing each bad field by path; 1 when Redis has a problem."""
    settings = cli_settings(file)
    count = len(settings.sinks)
    click.echo(f"OK: {count} sink{'s' * (count != 1)} ({settings.source or 'built-in defaults'})")
    if settings.secret is None:
        click.echo("note: gateway.secret is not set, so unsigned webhooks are accepted")
    if not offline and not _report_redis(settings):
        raise SystemExit(REDIS_PROBLEM_EXIT)


def _report_redis(settings: Settings) -> bool:
    """Print the Redis survey; False when it found an error."""
    url, embedded = redis_url_for(settings.redis_url, settings.data_dir, settings.embedded_fsync)
    durability = durability_of(settings)
    mode = durability.mode if not durability.replicated else (
        f"replicated (a write is acknowledged once {durability.replicas} replica(s) confirmed it, "
        f"waiting up to {durability.timeout_ms / 1000:g} s)")
    if embedded is not None:
        click.echo(f"redis: embedded, under {settings.data_dir} (started by gateway run; no replicas)")
        click.echo(f"durability: {mode}")
        if durability.replicated:
            click.echo("  error: the embedded Redis has no replicas: every write would answer 503 replication_timeout")
            return False
        return True
    shown = parse_sentinel_url(url).describe() if is_sentinel_url(url) else without_password(url)
    found = survey_redis(url, durability)
    click.echo(f"redis: {shown}")
    for finding in found.findings.get("redis", []):
        click.echo(f"  {finding.level}: {finding.text}")
    click.echo(f"durability: {mode}")
    for finding in found.findings.get("durability", []):
        click.echo(f"  {finding.level}: {finding.text}")
    return not found.failed


@click.command()
@click.option("--secret", envvar="WEBHOOK_SECRET", default=None,
              help="The shared secret (default: $WEBHOOK_SECRET, else gateway.secret from the config).")
@click.argument("body", type=click.File("rb"), default="-")
@config_option
def sign(secret: str | None, body: Any) -> None:
    """Print the X-Webhook-Signature for the exact bytes of BODY (a file, or - for stdin):
    hex HMAC-SHA256 keyed with the secret, as the guide computes it."""
    if secret is None:
        secret = cli_settings().secret
        if secret is None:
            raise click.UsageError("give --secret (or set WEBHOOK_SECRET); the config has no gateway.secret")
    click.echo(hex_signature(body.read(), secret))


