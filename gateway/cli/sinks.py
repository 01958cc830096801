"""Sinks on the command line: ``sinks`` (state and counts), ``sinks add|edit|rm|enable|disable|
rotate-secret|show|export`` (the sinks API's store: same checks, same audit log, actor
``cli``), ``sinks pause``, ``sinks resume`` and ``send-test``."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Sequence
from typing import Any

import click

from gateway.cli.context import cli_runtime, config_option, echo_json, echo_table, json_option, require_sink
from gateway.delivery import sink_state
from gateway.errors import ApiError
from gateway.events import UnknownEvent
from gateway.integrations import audit, store
from gateway.integrations.export import export_toml
from gateway.publish import samples, system_events


@click.command("send-test")
@click.argument("event")
@click.option("--sink", required=True, help="The sink to send it to (and only it).")
@json_option
@config_option
def send_test_command(event: str, sink: str, as_json: bool) -> None:
    """Publish a sample EVENT to one sink through the normal delivery path."""
    runtime = cli_runtime()
    require_sink(runtime, sink)
    try:
        published = samples.send_test(runtime, event, sink)
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
    runtime = cli_runtime()
    runtime.refresh()
    states = sink_state.sink_states(runtime)
    if as_json:
        echo_json(states)
        return
    echo_table(["sink", "type", "source", "enabled", "state", "since / until / reason", "queued", "in flight",
                "delivered 24h", "retrying 24h", "failed 24h"],
               [[s["name"], s["type"], s["source"], "yes" if s["enabled"] else "no", s["state"],
                 s["paused_reason"] or s["circuit_open_until"] or _targets(s),
                 s["counts"]["queued"], s["counts"]["in_flight"], s["counts"]["last_24h"]["delivered"],
                 s["counts"]["last_24h"]["retrying"], s["counts"]["last_24h"]["failed"]] for s in states])


def _targets(state: dict[str, object]) -> str | None:
    """A fan-out sink's circuits are its targets': say how many are not closed."""
    targets = state.get("targets")
    if not isinstance(targets, dict) or not (targets["circuit_open"] or targets["half_open"]):
        return None
    return (f"targets: {targets['circuit_open']} circuit open, {targets['half_open']} half-open, "
            f"{targets['parked']} deliveries held")


@sinks_group.command("pause")
@click.argument("name")
@click.option("--reason", default=None, help="Why (shown with the state, in sink.paused and the audit log).")
@json_option
@config_option
def sinks_pause(name: str, reason: str | None, as_json: bool) -> None:
    """Pause a sink: nothing of it is sent until `gateway sinks resume`."""
    state = _change_state(name, lambda runtime: system_events.pause(runtime, name, audit.CLI_ACTOR, reason))
    _say(state, as_json, f"Sink {name} paused: {state['paused_reason']}; {state['counts']['queued']} queued.")


@sinks_group.command("resume")
@click.argument("name")
@json_option
@config_option
def sinks_resume(name: str, as_json: bool) -> None:
    """Un-pause a sink (and close its circuit); what waited is delivered."""
    state = _change_state(name, lambda runtime: system_events.resume(runtime, name, audit.CLI_ACTOR))
    _say(state, as_json, f"Sink {name} resumed: {state['state']}, {state['counts']['queued']} queued.")


def _change_state(name: str, change: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """Pause or resume (``change(runtime)``) the sink ``name``, as every process sees it now."""
    runtime = cli_runtime()
    runtime.refresh()
    try:
        return change(runtime)
    except sink_state.UnknownSink:
        raise click.BadParameter(f"No sink named {name!r} is configured.", param_hint="NAME") from None


def _say(state: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        echo_json(state)
    else:
        click.echo(line)


class IntegrationError(click.ClickException):
    """An :class:`ApiError` of the store, as the CLI prints it: the message, then one line
    per bad field (the same dotted paths as ``config check`` and the API's 422)."""

    exit_code = 1

    def __init__(self, error: ApiError) -> None:
        lines = [error.message] + [f"  {path}: {message}" for path, messages in sorted(error.fields.items())
                                   for message in messages]
        super().__init__("\n".join(lines))


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` pairs as a table: each value read as a TOML value (``5``,
    ``true``, ``[1, 2]``, ``{X-Tenant = "acme"}``, ``"text"``), else taken as a plain string
    (``url=https://...``)."""
    table: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint="--set")
        try:
            table[key] = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            table[key] = text
    return table


def _events(text: str | None) -> list[str] | None:
    return [e.strip() for e in text.split(",") if e.strip()] if text is not None else None


def _shown(runtime: Any, name: str) -> dict[str, Any]:
    return {**sink_state.sink_states(runtime, [name])[0], "etag": store.etag(runtime.sink_config(name))}


def _run(action: Any) -> Any:
    try:
        return action()
    except ApiError as error:
        raise IntegrationError(error) from None


@sinks_group.command("add")
@click.argument("name")
@click.option("--type", "sink_type", required=True, help="The sink type (`gateway plugins` lists them).")
@click.option("--events", required=True, help="Comma-separated event names, or '*'.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="An option, e.g. --set url=https://example.com/hook --set max_in_flight=5 (repeatable).")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@json_option
@config_option
def sinks_add(name: str, sink_type: str, events: str, settings: tuple[str, ...], disabled: bool,
              as_json: bool) -> None:
    """Create sink NAME in the sinks API's store (every running process uses it at once).
    A signing sink without --set secret=... gets a generated secret, printed this once."""
    runtime = cli_runtime()
    body = {"name": name, "type": sink_type, "events": _events(events), **parse_settings(settings)}
    if disabled:
        body["enabled"] = False
    saved = _run(lambda: store.create(runtime, body, audit.CLI_ACTOR))
    if as_json:
        echo_json({"sink": _shown(runtime, name), **({"secret": saved.secret} if saved.secret else {})})
        return
    click.echo(f"Created sink {name} ({sink_type}) <- {', '.join(saved.config.events)}"
               f"{'' if saved.config.enabled else ' (disabled)'}.")
    if saved.secret:
        click.echo(f"Signing secret (shown this once, keep it now): {saved.secret}")


@sinks_group.command("edit")
@click.argument("name")
@click.option("--events", default=None, help="Replace the events (comma-separated).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Set an option (repeatable).")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Put an option back to its default.")
@json_option
@config_option
def sinks_edit(name: str, events: str | None, settings: tuple[str, ...], unset: tuple[str, ...],
               as_json: bool) -> None:
    """Change some of NAME's settings; the next event and attempt use them."""
    runtime = cli_runtime()
    patch: dict[str, Any] = parse_settings(settings)
    if events is not None:
        patch["events"] = _events(events)
    patch.update(dict.fromkeys(unset))
    if not patch:
        raise click.UsageError("Nothing to change: give --events, --set or --unset.")
    saved = _run(lambda: store.update(runtime, name, patch, audit.CLI_ACTOR))
    _report(runtime, name, saved, as_json, "updated" if saved.changed else "unchanged")


def _report(runtime: Any, name: str, saved: store.Saved, as_json: bool, what: str) -> None:
    if as_json:
        echo_json(_shown(runtime, name))
    else:
        click.echo(f"Sink {name} {what}.")


@sinks_group.command("enable")
@click.argument("name")
@json_option
@config_option
def sinks_enable(name: str, as_json: bool) -> None:
    """Enable NAME: events published from now on go to it."""
    runtime = cli_runtime()
    saved = _run(lambda: store.set_enabled(runtime, name, True, audit.CLI_ACTOR))
    _report(runtime, name, saved, as_json, "enabled")


@sinks_group.command("disable")
@click.argument("name")
@json_option
@config_option
def sinks_disable(name: str, as_json: bool) -> None:
    """Disable NAME: events published from now on do not go to it."""
    runtime = cli_runtime()
    saved = _run(lambda: store.set_enabled(runtime, name, False, audit.CLI_ACTOR))
    _report(runtime, name, saved, as_json, "disabled")


@sinks_group.command("rm")
@click.argument("name")
@config_option
def sinks_rm(name: str) -> None:
    """Delete NAME; its deliveries still waiting are cancelled (reason sink_deleted)."""
    runtime = cli_runtime()
    cancelled = _run(lambda: store.delete(runtime, name, audit.CLI_ACTOR))
    click.echo(f"Sink {name} deleted; {cancelled} waiting deliveries cancelled.")


@sinks_group.command("rotate-secret")
@click.argument("name")
@click.option("--overlap", type=click.IntRange(0, store.MAX_OVERLAP_S), default=None,
              help="Seconds the old secret keeps signing (default gateway.rotation_overlap; 0: stop at once).")
@config_option
def sinks_rotate_secret(name: str, overlap: int | None) -> None:
    """Give NAME a new secret and print it (this once, alone on stdout); the old one keeps
    signing beside it for the overlap."""
    runtime = cli_runtime()
    _, secret, until = _run(lambda: store.rotate(runtime, name, audit.CLI_ACTOR, overlap))
    click.echo(secret)
    click.echo(f"The previous secret signs until {store.iso_at(until)}." if until else
               "The previous secret no longer signs.", err=True)


@sinks_group.command("show")
@click.argument("name")
@json_option
@config_option
def sinks_show(name: str, as_json: bool) -> None:
    """One sink: settings (never a secret), state and counts."""
    runtime = cli_runtime()
    _run(lambda: store.get(runtime, name))
    shown = _shown(runtime, name)
    if as_json:
        echo_json(shown)
        return
    for key in ("name", "type", "source", "enabled", "events", "signed", "state", "max_in_flight", "timeout",
                "retry_schedule", "rate_limit", "failure_threshold", "ordering", "fan_out", "created_at",
                "updated_at"):
        value = shown[key]
        click.echo(f"{key + ':':<18}{', '.join(map(str, value)) if isinstance(value, list) else value}")
    for key, value in shown["options"].items():
        click.echo(f"{key + ':':<18}{value}")
    counts = shown["counts"]
    click.echo(f"{'queued:':<18}{counts['queued']}  in flight: {counts['in_flight']}  last 24 h: "
               + ", ".join(f"{k} {v}" for k, v in counts["last_24h"].items()))


@sinks_group.command("export")
@config_option
def sinks_export() -> None:
    """The sinks API's sinks as [[sinks]] TOML, secrets as ${ENV} placeholders."""
    click.echo(export_toml(cli_runtime()), nl=False)


COMMANDS = (send_test_command, sinks_group)
