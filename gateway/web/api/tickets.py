"""Ticket endpoints (bearer admin token):

* ``GET /api/tickets/<id>``: one ticket.
* ``GET /api/tickets?limit=&cursor=``: newest first, ``{"tickets", "next_cursor"}``.
* ``PATCH /api/tickets/<id>``: change status / priority / category; publishes
  ``ticket.updated`` (plus ``ticket.resolved`` / ``ticket.escalated`` on those transitions)
  in the same transaction as the change and its audit log entry.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from gateway.errors import ApiError
from gateway.publish.schemas import TicketPatch
from gateway.publish.tickets import MAX_PAGE, InvalidCursor, TicketNotFound, TicketStore
from gateway.web.auth import current_actor, require_admin
from gateway.web.bodies import json_object_body, load_or_422

bp = Blueprint("tickets", __name__)
TICKET_PATCH = TicketPatch()
MAX_ID_LENGTH = 100


def _store() -> TicketStore:
    return TicketStore(current_app.extensions["gateway"])


def _not_found(ticket_id: str) -> ApiError:
    return ApiError(404, "ticket_not_found", f"No ticket with id {ticket_id[:MAX_ID_LENGTH]!r}.")


def _limit() -> int:
    raw = request.args.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(400, "invalid_parameter", f"limit must be a whole number from 1 to {MAX_PAGE}.",
                       {"limit": [f"Must be a whole number from 1 to {MAX_PAGE}."]})
    return limit


@bp.get("/api/tickets/<ticket_id>")
@require_admin
def get_ticket(ticket_id: str) -> Response:
    """One ticket.
    ---
    get:
      tags: [tickets]
      summary: Get a ticket
      security: [{adminToken: []}]
      responses:
        200:
          description: The ticket.
          content:
            application/json:
              schema: {type: object, required: [ticket], properties: {ticket: TicketSchema}}
        401: Unauthorized
        403: Forbidden
        404: NotFound
        503: StorageUnavailable
    """
    try:
        return jsonify({"ticket": _store().get(ticket_id)})
    except TicketNotFound:
        raise _not_found(ticket_id) from None


@bp.get("/api/tickets")
@require_admin
def list_tickets() -> Response:
    """Tickets, newest first, a page at a time.
    ---
    get:
      tags: [tickets]
      summary: List tickets
      security: [{adminToken: []}]
      parameters:
        - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 200, default: 50}}
        - name: cursor
          in: query
          required: false
          description: The `next_cursor` of the previous page.
          schema: {type: string}
      responses:
        200:
          description: A page of tickets; `next_cursor` is null on the last page.
          content:
            application/json:
              schema:
                type: object
                required: [tickets, next_cursor]
                properties:
                  tickets: {type: array, items: TicketSchema}
                  next_cursor: {type: string, nullable: true}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        503: StorageUnavailable
    """
    limit = _limit()
    try:
        page = _store().list(limit=limit, cursor=request.args.get("cursor") or None)
    except InvalidCursor:
        raise ApiError(400, "invalid_parameter", "cursor is not one this API returned; start again without it.",
                       {"cursor": ["Not a valid cursor."]}) from None
    return jsonify({"tickets": page.tickets, "next_cursor": page.next_cursor})


@bp.patch("/api/tickets/<ticket_id>")
@require_admin
def patch_ticket(ticket_id: str) -> Response:
    """Change a ticket's status, priority or category.
    ---
    patch:
      tags: [tickets]
      summary: Update a ticket
      description: >-
        Publishes `ticket.updated`, plus `ticket.resolved` or `ticket.escalated` when the
        status changes to one of those, in the same transaction as the change.
      security: [{adminToken: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema: TicketPatch
      responses:
        200:
          description: The updated ticket, what changed and the events published.
          content:
            application/json:
              schema:
                type: object
                required: [ticket, changed, events]
                properties:
                  ticket: TicketSchema
                  changed: {type: array, items: {type: string}}
                  events:
                    type: array
                    items:
                      type: object
                      properties: {event: {type: string}, event_id: {type: string}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    changes = load_or_422(TICKET_PATCH, json_object_body('{"status": "resolved"}'))
    if not changes:
        raise ApiError(422, "validation_failed", "Give at least one of status, priority, category.",
                       {"_schema": ["Give at least one of status, priority, category."]})
    try:
        change = _store().patch(ticket_id, changes, actor=current_actor())
    except TicketNotFound:
        raise _not_found(ticket_id) from None
    return jsonify({"ticket": change.ticket, "changed": list(change.changed),
                    "events": [{"event": p.event.name, "event_id": p.event.id} for p in change.published]})
