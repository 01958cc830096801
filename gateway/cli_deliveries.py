"""CLI commands for the delivery log and sinks: ``deliveries``, ``delivery show``,
``replay``, ``send-test``, ``sinks`` and ``sinks resume``. Tables in a terminal, ``--json``
for scripts. (``worker`` lives in :mod:`gateway.worker`.)
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from gateway import deliverylog, sinkstate
from gateway.cli import cli_runtime, config_option, echo_json, echo_table
from gateway.events import UnknownEvent
from gateway.hookspecs import hookimpl

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return deliverylog.parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _require_sink(runtime: Any, name: str | None) -> None:
    if name is not None and name not in runtime.sinks:
        known = ", ".join(sorted(runtime.sinks)) or "none"
        raise click.BadParameter(f"No sink named {name!r} is configured (configured: {known}).",
                                 param_hint="--sink")


@click.command("deliveries")
@click.option("--sink", default=None, help="Only this sink's deliveries.")
@click.option("--status", type=click.Choice(deliverylog.STATUSES), default=None, help="Only this status.")
@click.option("--event", default=None, help="Only this event, e.g. ticket.created.")
@click.option("--since", default=None, help="Created since: ISO-8601 time, or an age like 30m, 2h, 7d.")
@click.option("--limit", type=click.IntRange(1, deliverylog.MAX_LIMIT), default=50, show_default=True)
@json_option
@config_option
def deliveries_command(sink: str | None, status: str | None, event: str | None, since: str | None, limit: int,
                       as_json: bool) -> None:
    """List deliveries, newest first."""
    runtime = cli_runtime()
    _require_sink(runtime, sink)
    rows = deliverylog.list_deliveries(runtime, sink=sink, status=status, event=event, since=_since(since),
                                       limit=limit)
    if as_json:
        echo_json(rows)
        return
    echo_table(["id", "created", "event", "sink", "status", "attempts", "last", "next attempt"],
               [[r["id"], r["created_at"], r["event"], r["sink"], r["status"], r["attempts"],
                 r["last_status_code"] or r["last_error"], r["next_attempt_at"]] for r in rows])


@click.group("delivery")
def delivery_group() -> None:
    """One delivery."""


@delivery_group.command("show")
@click.argument("delivery_id")
@json_option
@config_option
def delivery_show(delivery_id: str, as_json: bool) -> None:
    """Show a delivery and every attempt: when, how long, what came back."""
    found = deliverylog.get_delivery(cli_runtime(), delivery_id)
    if found is None:
        raise click.ClickException(f"No delivery {delivery_id!r} (unknown, or past the retention period).")
    if as_json:
        echo_json(found)
        return
    for key in ("id", "event", "event_id", "sink", "status", "attempts", "created_at", "next_attempt_at",
                "last_error", "replays"):
        click.echo(f"{key + ':':17}{'' if found[key] is None else found[key]}")
    click.echo(f"{'target:':17}{found['target']['key']} {found['target']['url'] or ''}".rstrip())
    click.echo("")
    echo_table(["#", "at", "ms", "status", "outcome", "error", "response"],
               [[a["attempt"], a["at"], a["duration_ms"], a["status_code"], a["outcome"],
                 (a["error"] or {}).get("message"), (a["response_excerpt"] or "")[:60].replace("\n", " ")]
                for a in found["attempt_log"]])


@click.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--sink", default=None, help="Replay this sink's deliveries that match --status / --since.")
@click.option("--status", type=click.Choice(deliverylog.STATUSES), default="failed", show_default=True)
@click.option("--since", default=None, help="Created since: ISO-8601 time, or an age like 30m, 2h, 7d.")
@json_option
@config_option
def replay_command(delivery_ids: tuple[str, ...], sink: str | None, status: str, since: str | None,
                   as_json: bool) -> None:
    """Send deliveries again, with the same delivery ids: `replay ID...` or
    `replay --sink S [--status failed] [--since T]`."""
    if bool(delivery_ids) == bool(sink):
        raise click.UsageError("Give delivery ids, or --sink (with --status / --since), not both.")
    runtime = cli_runtime()
    if delivery_ids:
        result = deliverylog.replay(runtime, list(delivery_ids))
        if as_json:
            echo_json({"queued": result.queued, "results": result.outcomes})
            return
        echo_table(["id", "result"], sorted(result.outcomes.items()))
        if result.queued < len(delivery_ids):
            raise SystemExit(1)
        return
    _require_sink(runtime, sink)
    after = _since(since)
    if as_json or not sys.stderr.isatty():
        matched, queued = deliverylog.replay_matching(runtime, sink, status, after)
    else:
        total = deliverylog.count_indexed(runtime, sink, after)
        with click.progressbar(length=total, label=f"Replaying {status} deliveries of {sink}",
                               file=sys.stderr) as bar:
            matched, queued = deliverylog.replay_matching(runtime, sink, status, after, on_scanned=bar.update)
    if as_json:
        echo_json({"matched": matched, "queued": queued})
    else:
        click.echo(f"Replaying {queued} of {matched} {status} deliveries of sink {sink}.")


@click.command("send-test")
@click.argument("event")
@click.option("--sink", required=True, help="The sink to send it to (and only it).")
@json_option
@config_option
def send_test_command(event: str, sink: str, as_json: bool) -> None:
    """Publish a sample EVENT to one sink through the normal delivery path."""
    runtime = cli_runtime()
    _require_sink(runtime, sink)
    try:
        published = sinkstate.send_test(runtime, event, sink)
    except UnknownEvent:
        raise click.BadParameter(f"Unknown event {event!r}; `gateway events` lists them.",
                                 param_hint="EVENT") from None
    if as_json:
        echo_json({"event_id": published.event.id, "delivery_ids": list(published.delivery_ids)})
        return
    click.echo(f"Published {event} ({published.event.id}) to {sink}; "
               f"see `gateway delivery show {published.delivery_ids[0]}`." if published.delivery_ids else
               f"Published {event} ({published.event.id}); the sink produced no destination for it.")


@click.group("sinks", invoke_without_command=True)
@json_option
@config_option
@click.pass_context
def sinks_group(ctx: click.Context, as_json: bool) -> None:
    """Each sink's state (ok / circuit open until T / paused with reason) and counts."""
    if ctx.invoked_subcommand is not None:
        return
    states = sinkstate.sink_states(cli_runtime())
    if as_json:
        echo_json(states)
        return
    echo_table(["sink", "type", "state", "since / until / reason", "queued", "in flight", "delivered 24h",
                "retrying 24h", "failed 24h"],
               [[s["name"], s["type"], s["state"], s["paused_reason"] or s["circuit_open_until"],
                 s["counts"]["queued"], s["counts"]["in_flight"], s["counts"]["last_24h"]["delivered"],
                 s["counts"]["last_24h"]["retrying"], s["counts"]["last_24h"]["failed"]] for s in states])


@sinks_group.command("resume")
@click.argument("name")
@json_option
@config_option
def sinks_resume(name: str, as_json: bool) -> None:
    """Un-pause a sink (and close its circuit); what waited is delivered."""
    runtime = cli_runtime()
    try:
        state = sinkstate.resume(runtime, name)
    except sinkstate.UnknownSink:
        raise click.BadParameter(f"No sink named {name!r} is configured.", param_hint="NAME") from None
    if as_json:
        echo_json(state)
    else:
        click.echo(f"Sink {name} resumed: {state['state']}, {state['counts']['queued']} queued.")


@hookimpl
def register_commands(cli: click.Group) -> None:
    for command in (deliveries_command, delivery_group, replay_command, send_test_command, sinks_group):
        cli.add_command(command)
