"""The delivery log: a filterable list (or the deliveries of one delivery id, event id or
ticket number), one delivery with its attempts as sent, and replay (one delivery, or every
failed one of a sink). Reads and replays go through
:mod:`gateway.delivery.delivery_log`, the same functions as ``/api/deliveries`` and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.delivery import delivery_log
from gateway.digits import is_ascii_digits
from gateway.integrations import audit
from gateway.web.admin import charts
from gateway.web.admin.blueprint import bp, runtime, to_datetime
from gateway.web.auth import current_actor

PAGE_SIZE = 50
MAX_SEARCH = 200
# (value of ?since=, label): values are delivery_log.parse_since ages.
PERIODS = (("", "Any time"), ("1h", "In the last hour"), ("24h", "In the last 24 hours"),
           ("7d", "In the last 7 days"))
_PERIOD_VALUES = {value for value, _ in PERIODS}
NOW_FILTERS = {"in_flight": "being attempted now", "waiting": "waiting for their turn"}


def _filters() -> dict[str, str]:
    """The list's filters from the query string; unknown values are dropped, not errors,
    since they come from the console's own select boxes (or an edited URL)."""
    rt = runtime()
    wanted = {name: (request.args.get(name) or "").strip() for name in ("sink", "event", "status", "since", "now")}
    # A deleted sink's deliveries stay in the log (cancelled ones, say) until they expire.
    if wanted["sink"] not in rt.sinks and wanted["sink"] not in rt.integrations.deleted:
        wanted["sink"] = ""
    # The integration card's "now" counts: pending deliveries being attempted, or not yet.
    if wanted["now"] not in NOW_FILTERS or not wanted["sink"]:
        wanted["now"] = ""
    elif wanted["now"]:
        wanted["status"] = "pending"
    if wanted["event"] not in rt.plugins.catalog:
        wanted["event"] = ""
    if wanted["status"] not in delivery_log.STATUSES:
        wanted["status"] = ""
    if wanted["since"] not in _PERIOD_VALUES:
        wanted["since"] = ""
    return {name: value for name, value in wanted.items() if value}


def _limit() -> int:
    raw = request.args.get("limit", "")
    return min(int(raw), delivery_log.MAX_LIMIT) if is_ascii_digits(raw) and int(raw) > 0 else PAGE_SIZE


def _chart_rows(filters: dict[str, str], since: datetime | None,
                keep: Callable[[dict[str, Any]], bool] | None) -> list[dict[str, Any]]:
    """The filtered set's deliveries of the last 24 hours (the latest CHART_ROWS of them)."""
    day_ago = datetime.now(UTC) - timedelta(hours=24)
    return delivery_log.list_deliveries(runtime(), sink=filters.get("sink"), status=filters.get("status"),
                                        event=filters.get("event"), since=max(since or day_ago, day_ago),
                                        limit=charts.CHART_ROWS, keep=keep)


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    return all(row.get(name) == filters[name] for name in ("sink", "event", "status") if name in filters)


@bp.route("/deliveries")
def deliveries() -> str:
    """Deliveries newest first, filtered by sink, event, status and creation time, or found
    by a delivery id, event id or ticket number (``q``); each with its ticket."""
    rt = runtime()
    filters = _filters()
    limit = _limit()
    since = delivery_log.parse_since(filters["since"]) if "since" in filters else None
    keep = None
    if "now" in filters:  # "waiting" or "in_flight": the integration card's "now" counts
        attempting = delivery_log.in_flight_ids(rt, filters["sink"])
        in_flight_wanted = filters["now"] == "in_flight"
        keep = lambda fields: (fields.get("id") in attempting) == in_flight_wanted  # noqa: E731
    wanted = (request.args.get("q") or "").strip()[:MAX_SEARCH]
    if wanted:
        filters["q"] = wanted
        rows = [row for row in delivery_log.find_deliveries(rt, wanted)
                if _matches(row, filters) and (since is None or (to_datetime(row["created_at"]) or since) >= since)
                and (keep is None or keep(row))]
    else:
        # One more than shown tells whether a "Show more" link is needed.
        rows = delivery_log.list_deliveries(rt, sink=filters.get("sink"), status=filters.get("status"),
                                           event=filters.get("event"), since=since, limit=limit + 1, keep=keep)
    chart = charts.deliveries_chart(rows if wanted or len(rows) <= limit else _chart_rows(filters, since, keep))
    choices = [  # (query parameter, label, [(value, text), ...]) for the filter form
        ("sink", "Sink", [("", "All sinks")] + [(name, name) for name in rt.sinks]
         + ([(filters["sink"], f"{filters['sink']} (deleted)")] if filters.get("sink", "") not in rt.sinks
            and filters.get("sink") else [])),
        ("event", "Event", [("", "All events")] + [(name, name) for name in rt.plugins.catalog.names()]),
        ("status", "Status", [("", "Any status")] + [(name, name) for name in delivery_log.STATUSES]),
        ("since", "Created", list(PERIODS)),
    ]
    return render_template("admin/deliveries.html", title="Deliveries",
                           rows=delivery_log.with_tickets(rt, rows[:limit]),
                           more=len(rows) > limit and limit < delivery_log.MAX_LIMIT, limit=limit,
                           filters=filters, choices=choices, chart=chart,
                           now_label=NOW_FILTERS.get(filters.get("now", "")))


def _delivery_or_404(delivery_id: str) -> dict[str, Any]:
    found = delivery_log.get_delivery(runtime(), delivery_id)
    if found is None:
        abort(404, description="No such delivery: it is unknown, or past the retention period.")
    return found


@bp.route("/deliveries/<delivery_id>")
def delivery(delivery_id: str) -> str:
    """One delivery: its state, and every attempt with status code, duration, response
    excerpt and request headers (secret values already hidden by the engine)."""
    found = _delivery_or_404(delivery_id)
    return render_template("admin/delivery.html", title=f"Delivery {delivery_id}", delivery=found,
                           attempts=found["attempt_log"])


@bp.route("/deliveries/<delivery_id>.json")
def delivery_status(delivery_id: str) -> WerkzeugResponse:
    """What the delivery page's script polls: just enough to notice a change."""
    found = _delivery_or_404(delivery_id)
    return jsonify({"id": found["id"], "status": found["status"], "attempts": found["attempts"]})


@bp.route("/deliveries/<delivery_id>/replay", methods=["POST"])
def replay(delivery_id: str) -> WerkzeugResponse:
    """Send one delivery again, with the same delivery id."""
    outcome = delivery_log.replay(runtime(), [delivery_id]).outcomes.get(delivery_id, "missing")
    if outcome == "missing":
        abort(404, description="No such delivery: it is unknown, or past the retention period.")
    if outcome == "busy":
        flash("This delivery is already queued or being attempted: replay it once that attempt is over.",
              "error")
    else:
        audit.record(runtime(), current_actor(), "replay", f"delivery:{delivery_id}")
        flash("Replay queued: the delivery will be sent again with the same delivery id.", "ok")
    return redirect(url_for("admin.delivery", delivery_id=delivery_id))


@bp.route("/sinks/<sink>/replay-failed", methods=["POST"])
def replay_failed(sink: str) -> WerkzeugResponse:
    """Replay every failed delivery of a sink (within the list's time filter, if any)."""
    if sink not in runtime().sinks:
        abort(404, description="No sink of that name is configured.")
    since_value = request.form.get("since", "")
    since = delivery_log.parse_since(since_value) if since_value in _PERIOD_VALUES and since_value else None
    matched, queued = delivery_log.replay_matching(runtime(), sink, "failed", since)
    if matched == 0:
        flash(f"{sink} has no failed deliveries to replay.", "info")
    else:
        audit.record(runtime(), current_actor(), "replay", f"sink:{sink}",
                     {"failed_deliveries": {"from": None, "to": queued}})
        busy = matched - queued
        note = f" ({busy} already queued or in flight)" if busy else ""
        flash(f"Replay queued for {queued} failed deliveries of {sink}{note}.", "ok")
    return redirect(url_for("admin.deliveries", sink=sink))
