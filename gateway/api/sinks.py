"""Sink state over HTTP (bearer admin token):

* ``GET /api/sinks``: every configured sink with its state (ok / circuit open until T /
  paused with reason) and counts.
* ``POST /api/sinks/<name>/resume``: un-pause it (and close its circuit).
* ``POST /api/sinks/<name>/test``: publish a sample event to it alone, through the normal
  path; body ``{"event": "ticket.created"}`` (optional; that is the default).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify

from gateway import sinkstate
from gateway.api.auth import require_admin
from gateway.api.receive import parse_json, read_body
from gateway.errors import ApiError
from gateway.events import UnknownEvent
from gateway.hookspecs import hookimpl

bp = Blueprint("sinks", __name__)
DEFAULT_TEST_EVENT = "ticket.created"
MAX_NAME_LENGTH = 100


def _sink_not_found(name: str) -> ApiError:
    return ApiError(404, "sink_not_found", f"No sink named {name[:MAX_NAME_LENGTH]!r} is configured.")


@bp.get("/api/sinks")
@require_admin
def list_sinks() -> Response:
    """Every configured sink with its state and counts.
    ---
    get:
      tags: [sinks]
      summary: List sinks
      security: [{adminToken: []}]
      responses:
        200:
          description: Sinks in config order; secrets are never included.
          content:
            application/json:
              schema:
                type: object
                required: [sinks]
                properties:
                  sinks: {type: array, items: {$ref: '#/components/schemas/SinkState'}}
        401: Unauthorized
        403: Forbidden
        503: StorageUnavailable
    """
    return jsonify({"sinks": sinkstate.sink_states(current_app.extensions["gateway"])})


@bp.post("/api/sinks/<name>/resume")
@require_admin
def resume_sink(name: str) -> Response:
    """Un-pause a sink and close its circuit; what waited is delivered.
    ---
    post:
      tags: [sinks]
      summary: Resume a sink
      security: [{adminToken: []}]
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, x-values: sinks}}
      responses:
        200:
          description: The sink's new state.
          content:
            application/json:
              schema:
                type: object
                required: [sink]
                properties:
                  sink: {$ref: '#/components/schemas/SinkState'}
        401: Unauthorized
        403: Forbidden
        404: NotFound
        503: StorageUnavailable
    """
    try:
        return jsonify({"sink": sinkstate.resume(current_app.extensions["gateway"], name)})
    except sinkstate.UnknownSink:
        raise _sink_not_found(name) from None


@bp.post("/api/sinks/<name>/test")
@require_admin
def test_sink(name: str) -> tuple[Response, int]:
    """Publish a sample event to this sink alone, through the normal delivery path.
    ---
    post:
      tags: [sinks]
      summary: Send a test event to a sink
      security: [{adminToken: []}]
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, x-values: sinks}}
      requestBody:
        required: false
        content:
          application/json:
            schema:
              type: object
              properties:
                event: {type: string, default: ticket.created, x-values: event-types}
      responses:
        202:
          description: Published; the delivery ids show in the delivery log.
          content:
            application/json:
              schema:
                type: object
                required: [event_id, event, delivery_ids]
                properties:
                  event_id: {type: string}
                  event: {type: string}
                  delivery_ids: {type: array, items: {type: string}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        422: ValidationFailed
        503: StorageUnavailable
    """
    runtime = current_app.extensions["gateway"]
    event_name = DEFAULT_TEST_EVENT
    body = read_body()
    if body.strip():
        doc = parse_json(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("event", DEFAULT_TEST_EVENT), str):
            raise ApiError(400, "malformed_json", 'The body must be a JSON object like {"event": "ticket.created"}.')
        event_name = doc.get("event", DEFAULT_TEST_EVENT)
    try:
        published = sinkstate.send_test(runtime, event_name, name)
    except sinkstate.UnknownSink:
        raise _sink_not_found(name) from None
    except UnknownEvent:
        raise ApiError(422, "unknown_event", f"Unknown event {event_name[:MAX_NAME_LENGTH]!r}; see GET /api/events.",
                       {"event": ["Unknown event."]}) from None
    return jsonify({"event_id": published.event.id, "event": published.event.name,
                    "delivery_ids": list(published.delivery_ids)}), 202


@hookimpl
def register_blueprints(register: Callable[[Blueprint], None]) -> None:
    register(bp)
