"""The delivery log over HTTP (bearer admin token):

* ``GET /api/deliveries?sink=&status=&event=&since=&limit=``: newest first.
* ``GET /api/deliveries/<id>``: one delivery with every attempt and its payload.
* ``POST /api/deliveries/<id>/replay``: send it again, same delivery id.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify, request

from gateway.delivery import delivery_log
from gateway.digits import is_ascii_digits
from gateway.errors import ApiError
from gateway.integrations import audit
from gateway.web.auth import current_actor, require_admin

bp = Blueprint("deliveries", __name__)
MAX_ID_LENGTH = 100


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}", {name: [message]})


def _limit() -> int:
    raw = request.args.get("limit", "50")
    if not is_ascii_digits(raw) or not 1 <= int(raw) <= delivery_log.MAX_LIMIT:
        raise _bad("limit", f"Must be a whole number from 1 to {delivery_log.MAX_LIMIT}.")
    return int(raw)


def _since() -> datetime | None:
    raw = request.args.get("since")
    if not raw:
        return None
    try:
        return delivery_log.parse_since(raw)
    except ValueError as exc:
        raise _bad("since", str(exc)) from None


def _not_found(delivery_id: str) -> ApiError:
    return ApiError(404, "delivery_not_found", f"No delivery with id {delivery_id[:MAX_ID_LENGTH]!r} "
                    "(unknown, or past the retention period).")


@bp.get("/api/deliveries")
@require_admin
def list_deliveries() -> Response:
    """The delivery log, newest first.
    ---
    get:
      tags: [deliveries]
      summary: List deliveries
      security: [{adminToken: []}]
      parameters:
        - {name: sink, in: query, required: false, schema: {type: string, x-values: sinks}}
        - name: status
          in: query
          required: false
          schema: {type: string, enum: [pending, retrying, waiting, delivered, failed]}
        - {name: event, in: query, required: false, schema: {type: string, x-values: event-types}}
        - name: since
          in: query
          required: false
          description: Created since an ISO-8601 time, or an age such as 30m, 2h, 7d.
          schema: {type: string}
        - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 1000, default: 50}}
      responses:
        200:
          description: Matching deliveries.
          content:
            application/json:
              schema:
                type: object
                required: [deliveries]
                properties:
                  deliveries: {type: array, items: {$ref: '#/components/schemas/Delivery'}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        503: StorageUnavailable
    """
    runtime = current_app.extensions["gateway"]
    status = request.args.get("status") or None
    if status is not None and status not in delivery_log.STATUSES:
        raise _bad("status", f"Must be one of {', '.join(delivery_log.STATUSES)}.")
    sink = request.args.get("sink") or None
    # A deleted sink's deliveries stay in the log (cancelled, or as they ended).
    if sink is not None and sink not in runtime.refresh().configs and sink not in runtime.integrations.deleted:
        raise ApiError(404, "sink_not_found", f"No sink named {sink[:MAX_ID_LENGTH]!r} is configured.",
                       {"sink": ["Unknown sink."]})
    rows = delivery_log.list_deliveries(runtime, sink=sink, status=status, event=request.args.get("event") or None,
                                       since=_since(), limit=_limit())
    return jsonify({"deliveries": rows})


@bp.get("/api/deliveries/<delivery_id>")
@require_admin
def get_delivery(delivery_id: str) -> Response:
    """One delivery with every attempt and the payload it sends.
    ---
    get:
      tags: [deliveries]
      summary: Get a delivery
      security: [{adminToken: []}]
      responses:
        200:
          description: The delivery, its attempts (oldest first) and its payload.
          content:
            application/json:
              schema:
                type: object
                required: [delivery]
                properties:
                  delivery: {$ref: '#/components/schemas/DeliveryDetail'}
        401: Unauthorized
        403: Forbidden
        404: NotFound
        503: StorageUnavailable
    """
    found = delivery_log.get_delivery(current_app.extensions["gateway"], delivery_id)
    if found is None:
        raise _not_found(delivery_id)
    return jsonify({"delivery": found})


@bp.post("/api/deliveries/<delivery_id>/replay")
@require_admin
def replay_delivery(delivery_id: str) -> tuple[Response, int]:
    """Send a delivery again, with the same delivery id.
    ---
    post:
      tags: [deliveries]
      summary: Replay a delivery
      description: >-
        Back to pending with a fresh round of the retry schedule; receivers deduplicate on
        the unchanged delivery id (X-Webhook-Delivery, webhook-id). On a sink with ordering
        per ticket it is sent now, out of order: after the ticket's later events.
      security: [{adminToken: []}]
      responses:
        202:
          description: Queued again.
          content:
            application/json:
              schema:
                type: object
                required: [delivery]
                properties:
                  delivery: {$ref: '#/components/schemas/DeliveryDetail'}
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        503: StorageUnavailable
    """
    runtime = current_app.extensions["gateway"]
    outcome = delivery_log.replay(runtime, [delivery_id]).outcomes.get(delivery_id, "missing")
    if outcome == "missing":
        raise _not_found(delivery_id)
    if outcome == "busy":
        raise ApiError(409, "delivery_busy", "The delivery is already queued or being attempted; "
                       "replay it once that attempt is over.")
    audit.record(runtime, current_actor(), "replay", f"delivery:{delivery_id}")
    return jsonify({"delivery": delivery_log.get_delivery(runtime, delivery_id)}), 202
