"""Tickets: a searchable list, newest first, and one ticket with its events and their
deliveries, where an admin changes its status or priority.

A change goes through :meth:`gateway.publish.tickets.TicketStore.patch`, the same code as
``PATCH /api/tickets/<id>``: it publishes ``ticket.updated`` (and ``ticket.resolved`` /
``ticket.escalated``) through the normal path and writes the audit entry in the same
transaction. The events and deliveries come from the ticket's log (publish.lua) through
:func:`gateway.delivery.delivery_log.ticket_history`.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from marshmallow import ValidationError
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.delivery import delivery_log
from gateway.errors import flat_messages
from gateway.publish.schemas import PRIORITIES, STATUSES, TicketPatch
from gateway.publish.tickets import InvalidCursor, TicketNotFound, TicketQuery, TicketStore
from gateway.web.admin.blueprint import bp, runtime
from gateway.web.auth import current_actor

PAGE_SIZE = 25
MAX_SEARCH = 200
"""Longer search text is cut: no ticket field it is matched against is that long."""
TICKET_PATCH = TicketPatch()
EDITABLE = ("status", "priority")


def _store() -> TicketStore:
    return TicketStore(runtime())


def _query() -> TicketQuery:
    """The list's search and filters from the query string; a value the select boxes do
    not offer (an edited URL) is dropped, not an error."""
    status = request.args.get("status", "")
    priority = request.args.get("priority", "")
    return TicketQuery(text=(request.args.get("q") or "").strip()[:MAX_SEARCH],
                       status=status if status in STATUSES else "",
                       priority=priority if priority in PRIORITIES else "")


@bp.route("/tickets")
def tickets() -> str:
    """Tickets newest first, searched by number, customer email or subject, filtered by
    status and priority, a page at a time."""
    query = _query()
    cursor = request.args.get("cursor") or None
    try:
        page = _store().search(query, limit=PAGE_SIZE, cursor=cursor)
    except InvalidCursor:
        abort(400, description="That page link is not valid any more: start again from the first page.")
    filters = {"q": query.text, "status": query.status, "priority": query.priority}
    return render_template("admin/tickets.html", title="Tickets", page=page, cursor=cursor,
                           filters={k: v for k, v in filters.items() if v}, statuses=STATUSES,
                           priorities=PRIORITIES)


def _ticket_or_404(ticket_id: str) -> dict[str, Any]:
    try:
        return _store().get(ticket_id)
    except TicketNotFound:
        abort(404, description="No such ticket. Find it on the Tickets page by its number, "
                               "its customer's email or its subject.")


def _render_ticket(ticket: dict[str, Any], errors: dict[str, list[str]] | None = None, status: int = 200
                   ) -> tuple[str, int]:
    history = delivery_log.ticket_history(runtime(), ticket["id"])
    pending = [d for event in history for d in event["deliveries"] if d["status"] in ("pending", "retrying", "waiting")]
    page = render_template("admin/ticket.html", title=f"Ticket {ticket.get('ticket_number') or ticket['id']}",
                           ticket=ticket, history=history, statuses=STATUSES, priorities=PRIORITIES,
                           errors=errors or {}, progress=_progress(history), settled=not pending)
    return page, status


def _progress(history: list[dict[str, Any]]) -> str:
    """What the page's script compares to notice a change: every delivery's status."""
    return ",".join(f"{d['id']}={d['status']}/{d['attempts']}" for event in history for d in event["deliveries"])


@bp.route("/tickets/<ticket_id>")
def ticket(ticket_id: str) -> tuple[str, int]:
    """One ticket: its fields, the status / priority form, and its events in order with each
    event's deliveries per integration."""
    return _render_ticket(_ticket_or_404(ticket_id))


@bp.route("/tickets/<ticket_id>.json")
def ticket_progress(ticket_id: str) -> WerkzeugResponse:
    """What the ticket page's script polls while deliveries are under way."""
    ticket = _ticket_or_404(ticket_id)
    history = delivery_log.ticket_history(runtime(), ticket["id"])
    return jsonify({"id": ticket["id"], "status": _progress(history), "attempts": len(history)})


@bp.route("/tickets/<ticket_id>", methods=["POST"])
def update_ticket(ticket_id: str) -> WerkzeugResponse | tuple[str, int]:
    """Change the ticket's status and priority; the events it publishes go to the
    integrations subscribed to them, and the change is in the audit log."""
    current = _ticket_or_404(ticket_id)
    submitted = {name: request.form.get(name, "") for name in EDITABLE if name in request.form}
    try:
        changes = TICKET_PATCH.load(submitted)
    except ValidationError as exc:
        return _render_ticket(current, flat_messages(exc.messages), 422)
    try:
        change = _store().patch(ticket_id, changes, actor=current_actor())
    except TicketNotFound:
        abort(404, description="No such ticket.")
    number = change.ticket.get("ticket_number") or ticket_id
    if not change.changed:
        flash(f"Nothing changed: {number} already had that status and priority.", "info")
    else:
        what = ", ".join(f"{field} {current.get(field)} → {change.ticket.get(field)}" for field in change.changed)
        flash(f"{number} updated ({what}); published {', '.join(change.event_names)}.", "ok")
    return redirect(url_for("admin.ticket", ticket_id=ticket_id))
