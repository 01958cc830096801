"""Sinks over HTTP (bearer admin token): Settings → Integrations as an API.

* ``GET /api/sinks``: every sink, the config file's (``source: config``, read-only) and the
  API's (``source: api``), with state and counts; never a secret.
* ``POST /api/sinks``: create one (a ``[[sinks]]`` table as JSON, validated the same way);
  a generated secret is returned once.
* ``GET /api/sinks/<name>`` (with an ``ETag``), ``PATCH`` (partial; ``If-Match`` honoured),
  ``DELETE`` (its waiting deliveries cancelled).
* ``POST /api/sinks/<name>/rotate-secret``: a new secret, shown once; the old one keeps
  signing for ``gateway.rotation_overlap``.
* ``POST /api/sinks/<name>/pause``: pause it (optional ``{"reason"}``); ``.../resume``:
  un-pause it (and close its circuit).
* ``POST /api/sinks/<name>/test``: publish a sample event to it alone, through the normal
  path; body ``{"event": "ticket.created"}`` (optional; that is the default).

Every change is in the audit log (``GET /api/audit``) under the name of the token used.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import Schema, fields, validate

from gateway.config import SinkConfig
from gateway.delivery import sink_state
from gateway.errors import ApiError
from gateway.events import UnknownEvent
from gateway.integrations import store
from gateway.integrations.validation import destination_warnings
from gateway.publish import samples, system_events
from gateway.web.auth import current_actor, require_admin
from gateway.web.bodies import json_object_body, load_or_422, optional_object_body, parse_json, read_body

bp = Blueprint("sinks", __name__)
DEFAULT_TEST_EVENT = "ticket.created"
MAX_NAME_LENGTH = 100
_WARNINGS_KEY = "gateway.file_sink_warnings"


def sink_not_found(name: str) -> ApiError:
    """404 ``sink_not_found`` for the sink called ``name``."""
    return ApiError(404, "sink_not_found", f"No sink named {name[:MAX_NAME_LENGTH]!r} is configured.")


def configured_sink(name: str) -> SinkConfig:
    """The sink called ``name`` as this process sees it now (the integrations version
    checked first); 404 ``sink_not_found`` when there is none."""
    config = _runtime().refresh().configs.get(name)
    if config is None:
        raise sink_not_found(name)
    return config


class RotateBody(Schema):
    """``POST .../rotate-secret``'s optional body."""

    overlap = fields.Integer(load_default=None, allow_none=True,
                             validate=validate.Range(min=0, max=store.MAX_OVERLAP_S))


def _runtime() -> Any:
    return current_app.extensions["gateway"]


def file_sink_warnings() -> dict[str, list[str]]:
    """What is wrong with the config file's sinks that the file's validation cannot say:
    destinations the SSRF guard will refuse (a loopback URL while
    ``delivery.allow_private_networks`` is off). Worked out once per process (the file's
    sinks are fixed for its life; a host name costs a DNS lookup). Sinks stored through
    this API are refused on save instead (422)."""
    app = current_app
    found: dict[str, list[str]] | None = app.extensions.get(_WARNINGS_KEY)
    if found is None:
        runtime = _runtime()
        found = {config.name: destination_warnings(runtime, config) for config in runtime.settings.sinks}
        app.extensions[_WARNINGS_KEY] = found
    return found


def with_warnings(state: dict[str, Any]) -> dict[str, Any]:
    """A listed sink with its ``warnings`` (always a list)."""
    return {**state, "warnings": file_sink_warnings().get(state["name"], []) if state["source"] == "config" else []}


def _shown(name: str) -> dict[str, Any]:
    """A sink with its state and counts, as GET /api/sinks lists it."""
    states = sink_state.sink_states(_runtime(), [name])
    if not states:
        raise sink_not_found(name)
    return with_warnings(states[0])


def _answer(saved: store.Saved, status: int = 200, **extra: Any) -> tuple[Response, int]:
    body: dict[str, Any] = {"sink": {**_shown(saved.config.name), **sink_state.public_sink(saved.config)}}
    body.update(extra)
    response = jsonify(body)
    response.headers["ETag"] = saved.etag
    if status == 201:
        response.headers["Location"] = f"/api/sinks/{saved.config.name}"
    return response, status


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
    runtime = _runtime()
    runtime.refresh()
    return jsonify({"sinks": [with_warnings(state) for state in sink_state.sink_states(runtime)]})


@bp.post("/api/sinks")
@require_admin
def create_sink() -> tuple[Response, int]:
    """Create a sink: a ``[[sinks]]`` table as JSON.
    ---
    post:
      tags: [sinks]
      summary: Create a sink
      description: >-
        The body is what a `[[sinks]]` table of the config file holds, as JSON: `name`, `type`,
        `events`, optionally `enabled` and the common options, and the type's own options (a
        generic webhook's `url`, `headers`...), validated by the same schemas with the same
        messages. A destination the SSRF policy would refuse is a 422 on `url`. When the type
        signs and no `secret` is given, one is generated and returned once in `secret`: it is
        never shown again.
      security: [{adminToken: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SinkCreate'}
      responses:
        201:
          description: Stored; every process routes by it from now on.
          headers:
            ETag: {description: The sink's version (for If-Match)., schema: {type: string}}
            Location: {description: The sink's URL., schema: {type: string}}
          content:
            application/json:
              schema:
                type: object
                required: [sink]
                properties:
                  sink: {$ref: '#/components/schemas/SinkState'}
                  secret: {type: string, description: 'The generated secret (whsec_...), shown this once.'}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        409: Conflict
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    body = json_object_body('{"name": "crm", "type": "generic_webhook", "url": "https://...", "events": ["*"]}')
    saved = store.create(_runtime(), body, current_actor())
    return _answer(saved, 201, **({"secret": saved.secret} if saved.secret else {}))


@bp.get("/api/sinks/<name>")
@require_admin
def get_sink(name: str) -> tuple[Response, int]:
    """One sink with its state and counts, and its ETag.
    ---
    get:
      tags: [sinks]
      summary: Get a sink
      security: [{adminToken: []}]
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, x-values: sinks}}
      responses:
        200:
          description: The sink; secrets are never included.
          headers:
            ETag: {description: The sink's version (for If-Match)., schema: {type: string}}
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
    config = store.get(_runtime(), name)
    return _answer(store.Saved(config, store.etag(config), changed=False))


@bp.patch("/api/sinks/<name>")
@require_admin
def patch_sink(name: str) -> tuple[Response, int]:
    """Change some of a sink's settings.
    ---
    patch:
      tags: [sinks]
      summary: Update a sink
      description: >-
        Each key given replaces the stored one (`events`, `enabled`, `url`, `headers`,
        `retry_schedule`, `max_in_flight`...); `null` puts an option back to its default. The
        result is validated like a new sink: one that would have no events is a 422. With
        `If-Match` (the ETag of a GET), a sink changed since is refused with 412 rather than
        overwritten. The next event published goes by the new settings, and the next attempt
        of every delivery already made uses the new URL, secret, headers and options. Sinks of
        the config file are read-only (409).
      security: [{adminToken: []}]
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, x-values: sinks}}
        - {name: If-Match, in: header, required: false, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/SinkPatch'}
      responses:
        200:
          description: The sink as it now is.
          headers:
            ETag: {description: The sink's new version., schema: {type: string}}
          content:
            application/json:
              schema:
                type: object
                required: [sink]
                properties:
                  sink: {$ref: '#/components/schemas/SinkState'}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        412: PreconditionFailed
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    body = json_object_body('{"events": ["ticket.created"], "enabled": false}')
    return _answer(store.update(_runtime(), name, body, current_actor(), request.headers.get("If-Match")))


@bp.delete("/api/sinks/<name>")
@require_admin
def delete_sink(name: str) -> tuple[str, int]:
    """Delete a sink; its waiting deliveries are cancelled.
    ---
    delete:
      tags: [sinks]
      summary: Delete a sink
      description: >-
        Its deliveries still waiting (pending, retrying, held by its circuit) end with status
        `cancelled` (`cancel_reason`: `sink_deleted`) in the delivery log and are never
        attempted. Sinks of the config file are read-only (409).
      security: [{adminToken: []}]
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, x-values: sinks}}
        - {name: If-Match, in: header, required: false, schema: {type: string}}
      responses:
        204: {description: Deleted.}
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        412: PreconditionFailed
        503: StorageUnavailable
    """
    store.delete(_runtime(), name, current_actor(), request.headers.get("If-Match"))
    return "", 204


@bp.post("/api/sinks/<name>/rotate-secret")
@require_admin
def rotate_secret(name: str) -> Response:
    """Give a sink a new secret; the old one keeps signing for the overlap.
    ---
    post:
      tags: [sinks]
      summary: Rotate a sink's secret
      description: >-
        A new generated secret, returned this once. During the overlap (`overlap` seconds,
        default `gateway.rotation_overlap`, 24 h) requests carry a Standard Webhooks
        `v1,` signature for each secret, and `X-Webhook-Signature` is made with the new one;
        then the old one is dropped. `"overlap": 0` drops it at once (a leaked secret).
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
                overlap: {type: integer, minimum: 0, maximum: 2592000, nullable: true}
      responses:
        200:
          description: The new secret, shown once.
          content:
            application/json:
              schema:
                type: object
                required: [secret]
                properties:
                  secret: {type: string}
                  previous_secret_valid_until:
                    type: string
                    nullable: true
                    description: When the replaced secret stops signing (null when at once).
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    overlap = overlap_body()
    _, secret, until = store.rotate(_runtime(), name, current_actor(), overlap)
    return jsonify({"secret": secret, "previous_secret_valid_until": store.iso_at(until)})


def overlap_body() -> int | None:
    """The optional ``{"overlap": seconds}`` body of a rotation (and of the receive secret's)."""
    body = optional_object_body('{"overlap": 3600}')
    overlap: int | None = load_or_422(RotateBody(), body)["overlap"] if body is not None else None
    return overlap


class PauseBody(Schema):
    """``POST .../pause``'s optional body."""

    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=sink_state.MAX_PAUSE_REASON))


@bp.post("/api/sinks/<name>/pause")
@require_admin
def pause_sink(name: str) -> Response:
    """Pause a sink: nothing of it is sent until it is resumed (what waits is kept).
    ---
    post:
      tags: [sinks]
      summary: Pause a sink
      description: >-
        As a destination's "gone" answer pauses it; the attempts already out finish. Publishes
        `sink.paused` (with the reason and the admin's name) unless it was paused already.
        `POST .../resume` un-pauses it.
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
                reason: {type: string, minLength: 1, maxLength: 500, default: paused by an admin}
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
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    runtime = _runtime()
    runtime.refresh()
    body = optional_object_body('{"reason": "maintenance"}')
    reason: str | None = load_or_422(PauseBody(), body)["reason"] if body is not None else None
    try:
        paused = system_events.pause(runtime, name, current_actor(), reason)
    except sink_state.UnknownSink:
        raise sink_not_found(name) from None
    return jsonify({"sink": paused})


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
    runtime = _runtime()
    runtime.refresh()
    try:
        resumed = system_events.resume(runtime, name, current_actor())
    except sink_state.UnknownSink:
        raise sink_not_found(name) from None
    return jsonify({"sink": resumed})


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
    runtime = _runtime()
    runtime.refresh()
    event_name = DEFAULT_TEST_EVENT
    body = read_body()
    if body.strip():
        doc = parse_json(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("event", DEFAULT_TEST_EVENT), str):
            raise ApiError(400, "malformed_json", 'The body must be a JSON object like {"event": "ticket.created"}.')
        event_name = doc.get("event", DEFAULT_TEST_EVENT)
    try:
        published = samples.send_test(runtime, event_name, name)
    except sink_state.UnknownSink:
        raise sink_not_found(name) from None
    except UnknownEvent:
        raise ApiError(422, "unknown_event", f"Unknown event {event_name[:MAX_NAME_LENGTH]!r}; see GET /api/events.",
                       {"event": ["Unknown event."]}) from None
    return jsonify({"event_id": published.event.id, "event": published.event.name,
                    "delivery_ids": list(published.delivery_ids)}), 202
