"""Event endpoints:

* ``POST /api/events`` (bearer admin token): the host application publishes any catalogued
  event, ``{"event", "data"}``; ``data`` is validated against the event type's schema and
  the event goes through the same atomic publish path as a received ticket -> 202
  ``{"event_id"}`` (a system event, which only the gateway publishes, is a 422
  ``system_event``). An ``Idempotency-Key`` seen again within the idempotency TTL answers
  200 with the original ``event_id`` and ``Idempotent-Replayed: true``, publishing nothing;
  the same key with another body (compared as canonical JSON, so key order and spacing do
  not count) is a 422 ``idempotency_key_reused``, as on the receive endpoint.
* ``GET /api/event-types`` (public): the catalogue, with each type's sample payload.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import ValidationError

from gateway.errors import ApiError, flat_messages, idempotency_key_reused
from gateway.events import Event, UnknownEvent
from gateway.publish.publisher import Plan, publish, transaction
from gateway.publish.schemas import PublishBody
from gateway.publish.tickets import document_digest
from gateway.storage.scripts import as_text
from gateway.web.auth import require_admin
from gateway.web.bodies import idempotency_key, json_object_body, load_or_422

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

bp = Blueprint("events_api", __name__)
PUBLISH_BODY = PublishBody()


def event_idempotency_key(runtime: Runtime, key: str) -> str:
    """Where an Idempotency-Key used on /api/events is remembered (apart from ticket keys,
    so one client's ticket key and event key cannot collide)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{runtime.settings.key_prefix}idem:event:{digest}"


@bp.post("/api/events")
@require_admin
def publish_event() -> tuple[Response, int]:
    """Publish a catalogued event (the host application's way in).
    ---
    post:
      tags: [events]
      summary: Publish an event
      description: >-
        `data` is validated against the event type's schema (`GET /api/event-types` lists
        the types with samples). The event is stored with one delivery per subscribed sink.
        An `Idempotency-Key` seen within `idempotency_ttl` returns the original event id
        with 200 and `Idempotent-Replayed: true`; the same key with a different body
        (compared as canonical JSON) is a 422 `idempotency_key_reused`.
      security: [{adminToken: []}]
      parameters:
        - name: Idempotency-Key
          in: header
          required: false
          schema: {type: string, minLength: 1, maxLength: 255}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/PublishedEvent'}
      responses:
        202:
          description: Stored and queued for delivery.
          content:
            application/json:
              schema: {type: object, required: [event_id], properties: {event_id: {type: string}}}
        200:
          description: The Idempotency-Key was seen before; the original event id.
          headers:
            Idempotent-Replayed: {schema: {type: string, enum: ["true"]}}
          content:
            application/json:
              schema: {type: object, required: [event_id], properties: {event_id: {type: string}}}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    runtime = current_app.extensions["gateway"]
    body = load_or_422(PUBLISH_BODY, json_object_body('{"event": "ticket.updated", "data": {"ticket": {...}}}'))
    name = body["event"]
    if name in runtime.plugins.catalog and runtime.plugins.catalog.get(name).system:
        # An alert admins rely on must come from the gateway, not from a client that can be wrong.
        raise ApiError(422, "system_event", f"{name} is published by the gateway itself, about its sinks; "
                       "it cannot be published through this API.", {"event": ["A system event."]})
    try:
        data = runtime.plugins.catalog.validate(name, body["data"])
    except UnknownEvent:
        raise ApiError(400, "unknown_event", f"Unknown event {name[:100]!r}; GET /api/event-types lists them.",
                       {"event": ["Unknown event."]}) from None
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", f"The data does not match the {name} schema.",
                       flat_messages(exc.messages, "data")) from None
    event = Event.new(name, data)
    key = idempotency_key(request.headers)
    if key is None:
        publish(runtime, event)
        return jsonify({"event_id": event.id}), 202
    remembered = event_idempotency_key(runtime, key)
    digest = document_digest(body)

    def plan(pipe: Pipeline) -> Plan:
        original = pipe.get(remembered)
        if original is not None:
            # "<event id> <digest>"; a bare event id was written before bodies were compared.
            original_id, _, original_digest = as_text(original).partition(" ")
            if original_digest and original_digest != digest:
                raise idempotency_key_reused()
            return Plan(result=original_id)

        def write(tx: Pipeline) -> None:
            tx.set(remembered, f"{event.id} {digest}", ex=runtime.settings.idempotency_ttl)

        return Plan(result=None, events=[event], write=write)

    original, _ = transaction(runtime, [remembered], plan)
    if original is not None:
        response = jsonify({"event_id": original})
        response.headers["Idempotent-Replayed"] = "true"
        return response, 200
    return jsonify({"event_id": event.id}), 202


@bp.get("/api/event-types")
def event_types() -> Response:
    """The event catalogue: every event a sink can subscribe to.
    ---
    get:
      tags: [events]
      summary: List event types
      security: []
      responses:
        200:
          description: Every event type, with a realistic sample of its data.
          content:
            application/json:
              schema:
                type: object
                required: [event_types]
                properties:
                  event_types: {type: array, items: {$ref: '#/components/schemas/EventTypeInfo'}}
    """
    catalog = current_app.extensions["gateway"].plugins.catalog
    return jsonify({"event_types": [
        {"name": t.name, "title": t.title, "description": t.description, "plugin": t.plugin, "sample": t.sample,
         "system": t.system}
        for t in catalog
    ]})
