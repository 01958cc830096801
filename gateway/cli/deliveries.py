"""The delivery log on the command line: ``deliveries``, ``delivery show`` and ``replay``.
Tables in a terminal, ``--json`` for scripts."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from gateway.cli.context import cli_runtime, config_option, echo_json, echo_table, json_option, require_sink
from gateway.delivery import delivery_log
from gateway.integrations import audit


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return delivery_log.parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@click.command("deliveries")
@click.option("--sink", default=None, help="Only this sink's deliveries.")
@click.option("--status", type=click.Choice(delivery_log.STATUSES), default=None, help="Only this status.")
@click.option("--event", default=None, help="Only this event, e.g. ticket.created.")
@click.option("--since", default=None, help="Created since: ISO-8601 time, or an age like 30m, 2h, 7d.")
@click.option("--limit", type=click.IntRange(1, delivery_log.MAX_LIMIT), default=50, show_default=True)
@json_option
@config_option
def deliveries_command(sink: str | None, status: str | None, event: str | None, since: str | None, limit: int,
                       as_json: bool) -> None:
    """List deliveries, newest first."""
    runtime = cli_runtime()
    require_sink(runtime, sink)
    rows = delivery_log.list_deliveries(runtime, sink=sink, status=status, event=event, since=_since(since),
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
    found = delivery_log.get_delivery(cli_runtime(), delivery_id)
    if found is None:
        raise click.ClickException(f"No delivery {delivery_id!r} (unknown, or past the retention period).")
    if as_json:
        echo_json(found)
        return
    for key in ("id", "event", "event_id", "sink", "status", "attempts", "created_at", "next_attempt_at",
                "last_error", "replays"):
        click.echo(f"{key + ':':17}{'' if found[key] is None else found[key]}")
    click.echo(f"{'target:':17}{found['target']['key']} {found['target']['url'] or ''}".rstrip())
    if found["ordering_key"]:
        click.echo(f"{'ordered by:':17}ticket {found['ordering_key']}")
    if found["waiting_for"]:
        click.echo(f"{'waiting for:':17}{found['waiting_for']} (the ticket's previous delivery must end first)")
    if found["waited_for"]:
        waited = found["waited_for"]
        click.echo(f"{'waited for:':17}{waited['id']} ({waited['status']}; released {waited['released_at']})")
    click.echo("")
    echo_table(["#", "at", "ms", "status", "outcome", "error", "response"],
               [[a["attempt"], a["at"], a["duration_ms"], a["status_code"], a["outcome"],
                 (a["error"] or {}).get("message"), (a["response_excerpt"] or "")[:60].replace("\n", " ")]
                for a in found["attempt_log"]])


@click.command("replay")
@click.argument("delivery_ids", nargs=-1)
@click.option("--sink", default=None, help="Replay this sink's deliveries that match --status / --since.")
@click.option("--status", type=click.Choice(delivery_log.STATUSES), default="failed", show_default=True)
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
        result = delivery_log.replay(runtime, list(delivery_ids))
        for delivery_id, outcome in result.outcomes.items():
            if outcome == "queued":
                audit.record(runtime, audit.CLI_ACTOR, "replay", f"delivery:{delivery_id}")
        if as_json:
            echo_json({"queued": result.queued, "results": result.outcomes})
            return
        echo_table(["id", "result"], sorted(result.outcomes.items()))
        if result.queued < len(delivery_ids):
            raise SystemExit(1)
        return
    require_sink(runtime, sink)
    after = _since(since)
    if as_json or not sys.stderr.isatty():
        matched, queued = delivery_log.replay_matching(runtime, sink, status, after)
    else:
        total = delivery_log.count_indexed(runtime, sink, after)
        with click.progressbar(length=total, label=f"Replaying {status} deliveries of {sink}",
                               file=sys.stderr) as bar:
            matched, queued = delivery_log.replay_matching(runtime, sink, status, after, on_scanned=bar.update)
    audit.record(runtime, audit.CLI_ACTOR, "replay", f"sink:{sink}",
                 {f"{status}_deliveries": {"from": None, "to": queued}})
    if as_json:
        echo_json({"matched": matched, "queued": queued})
    else:
        click.echo(f"Replaying {queued} of {matched} {status} deliveries of sink {sink}.")


COMMANDS = (deliveries_command, delivery_group, replay_command)
