"""System events: the gateway reports on its own sinks through its own bus.

``sink.circuit_opened`` / ``sink.circuit_closed``, ``sink.paused`` / ``sink.resumed``,
``delivery.failed`` (a summary) and ``sink.config_changed`` are catalogued like any event
(:data:`gateway.publish.builtin_events.SYSTEM_EVENT_TYPES`) and published through the normal
path, :func:`gateway.publish.publisher.publish`, by the process that saw the transition:

* circuits and pauses: the worker whose attempt finish.lua reported the transition for
  (the script reports each one to exactly one attempt, so several workers never publish it
  twice), :func:`after_attempt`;
* failures: finish.lua counts each delivery that ends failed; a worker's sweeper claims the
  sink's summary when one is due (at most one per sink per
  ``delivery.failure_summary_interval``; the claim is atomic, so each failure is counted
  in exactly one summary), :func:`flush_failure_summaries`;
* an admin's pause, resume and config changes: the web or CLI process that made the change.

No loops: a sink only gets the system events its ``events`` name (``"*"`` does not include
them) and never one about itself (the publisher skips it). Publishing is best effort: what
caused it (a delivery, an admin's change) has happened already, so a failure to publish is
logged and never raised into it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.delivery import sink_state
from gateway.events import Event, iso_from_ms, iso_z, utc_now
from gateway.integrations import audit
from gateway.publish.publisher import Published, publish
from gateway.storage.scripts import FailureSummary, Finished

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config import SinkConfig
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.system_events")

CIRCUIT_OPENED = "sink.circuit_opened"
CIRCUIT_CLOSED = "sink.circuit_closed"
PAUSED = "sink.paused"
RESUMED = "sink.resumed"
DELIVERY_FAILED = "delivery.failed"
CONFIG_CHANGED = "sink.config_changed"
CONFIG_ACTIONS = ("create", "update", "enable", "disable", "delete", "rotate")
"""The audit log's actions that change a sink's configuration."""


def sink_ref(runtime: Runtime, name: str, sink_type: str | None = None) -> dict[str, str]:
    """``{"name", "type"}`` of the sink an event is about (its type as configured now,
    unless given: a deleted sink's)."""
    if sink_type is None:
        config = runtime.integrations.configs.get(name)
        sink_type = config.type if config is not None else ""
    return {"name": name, "type": sink_type}


def publish_system_event(runtime: Runtime, name: str, sink: Mapping[str, str], data: Mapping[str, Any]
                         ) -> Published | None:
    """Publish system event ``name`` about ``sink`` (:func:`sink_ref`) with ``data``, through
    the normal path, to the sinks that subscribe to it. Nothing is written when none does.
    Never raises: returns None when nothing was published (the failure is logged)."""
    try:
        view = runtime.refresh()
        if not any(config.name != sink["name"] for config in view.subscribers.get(name, ())):
            return None
        wire = runtime.plugins.catalog.validate(name, {"sink": dict(sink), **data})
        return publish(runtime, Event.new(name, wire))
    except Exception as exc:  # noqa: BLE001 - see the module docstring: never break the cause
        log.warning("could not publish %s about sink %s: %s: %s", name, sink.get("name"), type(exc).__name__, exc)
        return None


# -- from the delivery path --------------------------------------------------------------------

def after_attempt(runtime: Runtime, sink: SinkConfig | None, sink_name: str, record: Mapping[str, Any],
                  lane: str, finished: Finished, pause_reason: str = "") -> None:
    """Publish what finish.lua said this attempt changed: a circuit opened or closed, the
    sink paused. (A re-opened circuit, a probe that failed, is the same outage: not news.)"""
    if not (finished.circuit in ("opened", "closed") or finished.paused):
        return
    ref = sink_ref(runtime, sink_name, sink.type if sink is not None else None)
    target = lane or None
    if finished.circuit == "opened":
        error = record.get("error")
        publish_system_event(runtime, CIRCUIT_OPENED, ref, {
            "target": target, "opened_at": iso_from_ms(str(finished.opened_at)),
            "probe_at": iso_from_ms(str(finished.open_until)), "status_code": record.get("status_code"),
            "last_error": f"{error.get('code')}: {error.get('message')}" if isinstance(error, Mapping) else None})
    elif finished.circuit == "closed":
        now = utc_now()
        opened_ms = finished.opened_at or None
        publish_system_event(runtime, CIRCUIT_CLOSED, ref, {
            "target": target, "opened_at": iso_from_ms(str(opened_ms)) if opened_ms else None,
            "closed_at": iso_z(now),
            "open_seconds": round(now.timestamp() - opened_ms / 1000, 3) if opened_ms else None})
    if finished.paused:
        publish_system_event(runtime, PAUSED, ref, {
            "reason": pause_reason or "paused", "paused_at": record.get("at") or iso_z(utc_now()), "actor": None,
            "delivery_id": record.get("delivery_id")})


def publish_failure_summary(runtime: Runtime, summary: FailureSummary) -> Published | None:
    """The delivery.failed summary of ``summary``'s failures."""
    return publish_system_event(runtime, DELIVERY_FAILED, sink_ref(runtime, summary.sink), {
        "failures": summary.count, "since": iso_from_ms(str(summary.since_ms)),
        "window_seconds": round(runtime.settings.delivery.failure_summary_interval),
        "delivery": summary.last or {"id": ""}})


def summary_window_ms(runtime: Runtime) -> int:
    """The failure summary window, in ms."""
    return int(runtime.settings.delivery.failure_summary_interval * 1000)


def flush_failure_summaries(runtime: Runtime) -> int:
    """Publish the failure summaries that are due (the sweeper calls this each pass);
    returns how many. Never raises."""
    try:
        summaries = runtime.scripts.failure_summaries(summary_window_ms(runtime))
    except Exception as exc:  # noqa: BLE001 - the sweeper's next pass tries again
        log.warning("could not read the failure summaries: %s", type(exc).__name__)
        return 0
    for summary in summaries:
        publish_failure_summary(runtime, summary)
    return len(summaries)


# -- from admins' actions ----------------------------------------------------------------------

DEFAULT_PAUSE_REASON = "paused by an admin"


def pause(runtime: Runtime, name: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    """Pause a sink (:func:`gateway.delivery.sink_state.pause`), write the audit entry, and
    publish ``sink.paused`` when it was not paused already. Returns the new state; raises
    :class:`~gateway.delivery.sink_state.UnknownSink`."""
    why = reason or DEFAULT_PAUSE_REASON
    state, paused = sink_state.pause(runtime, name, why)
    audit.record(runtime, actor, "pause", f"sink:{name}", {"paused_reason": {"from": None, "to": why}}
                 if paused else None)
    if paused:
        publish_system_event(runtime, PAUSED, sink_ref(runtime, name), {
            "reason": state["paused_reason"], "paused_at": state["paused_at"], "actor": actor, "delivery_id": None})
    return state


def resume(runtime: Runtime, name: str, actor: str) -> dict[str, Any]:
    """Un-pause a sink and close its circuit (:func:`gateway.delivery.sink_state.resume`),
    write the audit entry, and publish ``sink.resumed`` when it was held. Returns the new
    state; raises :class:`~gateway.delivery.sink_state.UnknownSink`."""
    state, held = sink_state.resume_held(runtime, name)
    audit.record(runtime, actor, "resume", f"sink:{name}")
    if held.paused or held.circuit_open:
        publish_system_event(runtime, RESUMED, sink_ref(runtime, name), {
            "resumed_at": iso_z(utc_now()), "actor": actor, "was_paused": held.paused,
            "paused_reason": held.paused_reason, "circuit_was_open": held.circuit_open})
    return state


def config_changed(runtime: Runtime, entry: Mapping[str, Any], sink_type: str | None) -> None:
    """Publish ``sink.config_changed`` for an audit entry of a sink's change (its changes
    are shown as the audit log shows them: secrets hidden, URLs masked)."""
    action = entry.get("action")
    target = str(entry.get("target", ""))
    if action not in CONFIG_ACTIONS or not target.startswith("sink:"):
        return
    name = target.removeprefix("sink:")
    publish_system_event(runtime, CONFIG_CHANGED, sink_ref(runtime, name, sink_type), {
        "action": action, "actor": entry.get("actor"), "at": entry.get("at"),
        "changes": dict(entry.get("changes") or {})})


class Reporter:
    """The :class:`gateway.runtime.SystemEventReporter` that publishes system events for one
    runtime; :func:`install` puts it on the runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def after_attempt(self, sink: SinkConfig | None, sink_name: str, record: Mapping[str, Any], lane: str,
                      finished: Finished, pause_reason: str = "") -> None:
        """:func:`after_attempt`."""
        after_attempt(self.runtime, sink, sink_name, record, lane, finished, pause_reason)

    def flush_failure_summaries(self) -> int:
        """:func:`flush_failure_summaries`."""
        return flush_failure_summaries(self.runtime)

    def config_changed(self, entry: Mapping[str, Any], sink_type: str | None) -> None:
        """:func:`config_changed`."""
        config_changed(self.runtime, entry, sink_type)


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime``'s engine and integration store report through this module."""
    runtime.reporter = Reporter(runtime)
    return runtime
