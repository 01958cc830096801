"""Settings → Integrations: every configured sink (read-only: the config file stays the
source of truth) with its state and last-24-hour counts; resume a paused sink; send a test
event; Zapier subscriptions. State, resume and test events go through
:mod:`gateway.delivery.sink_state`, the same functions as ``/api/sinks`` and the CLI."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.delivery import sink_state
from gateway.events import Catalog
from gateway.publish import samples, system_events
from gateway.redact import redact_url
from gateway.web.admin.blueprint import bp, runtime
from gateway.web.auth import current_actor

DEFAULT_TEST_EVENT = "ticket.created"


def subscriptions_of(sink: Any) -> list[dict[str, Any]] | None:
    """A fan-out sink's subscriptions (Zapier's REST hooks), target URLs redacted; None for a
    sink without any. Found by duck typing, so the core needs no import of the plugin."""
    store = getattr(sink, "subscriptions", None)
    if store is None or not callable(getattr(store, "all", None)):
        return None
    rows = []
    for sub in store.all():
        row = sub.to_json() if hasattr(sub, "to_json") else dict(sub)
        rows.append({**row, "target_url": redact_url(str(row.get("target_url", "")))})
    return rows


def testable_events(sink_config: Any, catalog: Catalog) -> list[str]:
    """The events a test can be sent for: those the sink subscribes to (a system event only
    when named: ``*`` does not include them)."""
    return [t.name for t in catalog if sink_config.subscribes(t.name, wildcard=not t.system)]


@bp.route("/")
def index() -> WerkzeugResponse:
    """The console opens on Integrations, as the guide's admins expect."""
    return redirect(url_for("admin.integrations"))


@bp.route("/integrations")
def integrations() -> str:
    """All sinks, as cards with their state, counts and actions."""
    rt = runtime()
    sinks = []
    for state in sink_state.sink_states(rt):
        sink_config = rt.sink_config(state["name"])
        sinks.append({**state, "test_events": testable_events(sink_config, rt.plugins.catalog),
                      "subscriptions": subscriptions_of(rt.sinks.get(state["name"]))})
    return render_template("admin/integrations.html", title="Integrations", sinks=sinks,
                           source=rt.settings.source)


def _known_sink(name: str) -> None:
    if name not in runtime().sinks:
        abort(404, description="No sink of that name is configured.")


@bp.route("/sinks/<sink>/pause", methods=["POST"])
def pause(sink: str) -> WerkzeugResponse:
    """Pause a sink: nothing of it is sent until it is resumed (what waits is kept)."""
    _known_sink(sink)
    system_events.pause(runtime(), sink, current_actor())
    return _back_to_card(sink, f"{sink} paused: its deliveries wait until you resume it.", "ok")


@bp.route("/sinks/<sink>/resume", methods=["POST"])
def resume(sink: str) -> WerkzeugResponse:
    """Un-pause a sink (and close its circuit): the admin says the destination is fixed."""
    _known_sink(sink)
    system_events.resume(runtime(), sink, current_actor())
    return _back_to_card(sink, f"{sink} resumed: waiting deliveries are being sent.", "ok")


def _back_to_card(sink: str, message: str, category: str) -> WerkzeugResponse:
    """Flash ``message`` and show the sink's card again."""
    flash(message, category)
    return redirect(url_for("admin.integrations", _anchor=f"sink-{sink}"))


@bp.route("/sinks/<sink>/test", methods=["POST"])
def send_test(sink: str) -> WerkzeugResponse:
    """Publish a sample event to this sink alone and open its delivery, which the page
    then watches until it lands."""
    _known_sink(sink)
    event_name = request.form.get("event") or DEFAULT_TEST_EVENT
    if event_name not in runtime().plugins.catalog:
        abort(400, description="Choose an event from the list.")
    published = samples.send_test(runtime(), event_name, sink)
    if not published.delivery_ids:
        return _back_to_card(sink, f"Test {event_name} published, but {sink} has no destination for it "
                             "(a Zapier sink needs a subscription to that event).", "info")
    flash(f"Test {event_name} sent to {sink}.", "ok")
    if len(published.delivery_ids) == 1:
        return redirect(url_for("admin.delivery", delivery_id=published.delivery_ids[0]))
    return redirect(url_for("admin.deliveries", sink=sink, event=event_name))
