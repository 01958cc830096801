"""Zapier's REST Hooks endpoints: subscribe, unsubscribe, list, and sample data.

``POST /api/zapier/hooks`` (``{"target_url" | "hookUrl", "event"}``) -> 201,
``DELETE /api/zapier/hooks/<id>`` -> 204, ``GET /api/zapier/hooks``,
``GET /api/zapier/samples/<event>`` -> up to 3 recent flat payloads (or one sample).

Authentication: ``X-API-Key`` with a key from a zapier sink's ``api_keys``, which also
picks the sink the subscription belongs to; the gateway's admin token works for every
zapier sink (new subscriptions go to the first one, or to the one named by ``sink``).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from gateway import Event
from gateway.config import url_field
from gateway.errors import ApiError
from gateway_zapier import samples
from gateway_zapier.payload import flatten
from gateway_zapier.sink import ZapierSink
from gateway_zapier.subscriptions import MAX_SUBSCRIPTIONS

bp = Blueprint("zapier", __name__, url_prefix="/api/zapier")


class SubscribeBody(Schema):
    """What Zapier's ``performSubscribe`` sends; ``hookUrl`` is Zapier's name for target_url."""

    class Meta:
        unknown = RAISE

    target_url = url_field(load_default=None)
    hookUrl = url_field(load_default=None)  # Zapier's own name for target_url
    event = fields.String(required=True, validate=validate.Length(min=1, max=100))
    sink = fields.String(load_default=None, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        target, hook = data.get("target_url"), data.get("hookUrl")
        if not target and not hook:
            raise ValidationError("Give the URL to deliver to as target_url (or Zapier's hookUrl).", "target_url")
        if target and hook and target != hook:
            raise ValidationError("target_url and hookUrl differ; send one of them.", "hookUrl")


SUBSCRIBE_BODY = SubscribeBody()


def _runtime() -> Any:
    return current_app.extensions["gateway"]


def _same(given: bytes, expected: str) -> bool:
    return hmac.compare_digest(given, expected.encode("utf-8"))


def _authorised_sinks() -> list[ZapierSink]:
    """The enabled zapier sinks the request's ``X-API-Key`` may manage (401 otherwise)."""
    runtime = _runtime()
    sinks = [s for s in runtime.sinks.values() if isinstance(s, ZapierSink) and s.enabled]
    if not sinks:
        raise ApiError(404, "zapier_not_configured", "No zapier sink is configured: add a [[sinks]] table "
                       'with type = "zapier" and api_keys to the gateway config.')
    header = request.headers.get("X-API-Key")
    if not header:
        raise ApiError(401, "unauthorized", "Send an API key from the zapier sink's api_keys in the "
                       "X-API-Key header.")
    given = header.encode("utf-8")
    admin = runtime.settings.admin_token
    if admin and _same(given, admin):
        return sinks
    matched = [s for s in sinks if any(_same(given, key) for key in s.options.get("api_keys") or ())]
    if not matched:
        raise ApiError(401, "unauthorized", "The X-API-Key is not one of the zapier sink's api_keys.")
    return matched


def _choose(sinks: list[ZapierSink], name: str | None) -> ZapierSink:
    if name is None:
        return sinks[0]
    for sink in sinks:
        if sink.name == name:
            return sink
    raise ApiError(422, "validation_failed", "The request body has invalid fields.",
                   {"sink": [f"No zapier sink called {name!r} is available to this API key."]})


def _check_event(sinks: list[ZapierSink], event: str) -> None:
    """422 unless ``event`` is a known event that one of ``sinks`` offers."""
    catalog = _runtime().plugins.catalog
    if event not in catalog:
        raise ApiError(422, "unknown_event", f"Unknown event {event!r}.",
                       {"event": [f"Unknown event {event!r}; known events: {', '.join(catalog.names())}."]})
    if not any(sink.offers(event) for sink in sinks):
        offered = sorted({e for sink in sinks for e in sink.options.get("events") or ()})
        raise ApiError(422, "event_not_allowed", f"Event {event!r} is not offered to Zapier.",
                       {"event": [f"Not in the zapier sink's events; allowed: {', '.join(offered)}."]})


def _body() -> dict[str, Any]:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the subscription as JSON (Content-Type: "
                       "application/json).")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "The body must be a JSON object.")
    try:
        return SUBSCRIBE_BODY.load(data)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise ApiError(422, "validation_failed", "The request body has invalid fields.", messages) from None


@bp.post("/hooks")
def subscribe() -> tuple[Response, int, dict[str, str]]:
    """Zapier's performSubscribe: remember where to send an event.
    ---
    post:
      tags: [zapier]
      summary: Subscribe a Zap (REST Hooks)
      description: >-
        `X-API-Key` (a key from a zapier sink's `api_keys`, or the admin token) picks the
        sink; `event` must be one of its `events`. Zapier's `hookUrl` is accepted for
        `target_url`.
      security: [{zapierApiKey: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              allOf:
                - SubscribeBody
                - {type: object, properties: {event: {type: string, x-values: event-types}}}
      responses:
        201:
          description: The subscription.
          headers:
            Location: {schema: {type: string}}
          content:
            application/json:
              schema: {type: object, required: [id, target_url, event, created_at, sink], properties: {id: {type: string}, target_url: {type: string}, event: {type: string}, created_at: {type: string}, sink: {type: string}}}
        400: BadRequest
        401: Unauthorized
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    sinks = _authorised_sinks()
    body = _body()
    sink = _choose(sinks, body["sink"])
    _check_event([sink], body["event"])
    if sink.subscriptions.count() >= MAX_SUBSCRIPTIONS:
        raise ApiError(409, "too_many_subscriptions", f"The zapier sink {sink.name!r} already has "
                       f"{MAX_SUBSCRIPTIONS} subscriptions; delete unused ones first.")
    sub = sink.subscriptions.create(body["event"], body["target_url"] or body["hookUrl"])
    return jsonify(sub.to_json()), 201, {"Location": f"{bp.url_prefix}/hooks/{sub.id}"}


@bp.delete("/hooks/<sub_id>")
def unsubscribe(sub_id: str) -> tuple[str, int]:
    """Zapier's performUnsubscribe: forget a subscription.
    ---
    delete:
      tags: [zapier]
      summary: Unsubscribe a Zap
      security: [{zapierApiKey: []}]
      responses:
        204: {description: Deleted.}
        401: Unauthorized
        404: NotFound
        503: StorageUnavailable
    """
    for sink in _authorised_sinks():
        if sink.subscriptions.delete(sub_id):
            return "", 204
    raise ApiError(404, "subscription_not_found", f"No subscription {sub_id!r}.")


@bp.get("/hooks")
def list_hooks() -> Response:
    """Every subscription the key may see (also a cheap way for Zapier to test a key).
    ---
    get:
      tags: [zapier]
      summary: List subscriptions
      security: [{zapierApiKey: []}]
      responses:
        200:
          description: The subscriptions of the sinks this key may manage.
          content:
            application/json:
              schema: {type: object, required: [hooks], properties: {hooks: {type: array, items: {type: object, required: [id, target_url, event, created_at, sink], properties: {id: {type: string}, target_url: {type: string}, event: {type: string}, created_at: {type: string}, sink: {type: string}}}}}}
        401: Unauthorized
        404: NotFound
        503: StorageUnavailable
    """
    hooks = [sub.to_json() for sink in _authorised_sinks() for sub in sink.subscriptions.all()]
    return jsonify({"hooks": hooks})


@bp.get("/samples/<event>")
def sample_payloads(event: str) -> Response:
    """Zapier's performList: recent payloads of ``event``, or one realistic sample.
    ---
    get:
      tags: [zapier]
      summary: Sample payloads of an event
      description: Up to three recent payloads, flat as Zapier receives them, or one realistic sample.
      security: [{zapierApiKey: []}]
      parameters:
        - {name: event, in: path, required: true, schema: {type: string, x-values: event-types}}
      responses:
        200:
          description: Flat payloads (`event`, `event_id`, `timestamp` and the event's fields).
          content:
            application/json:
              schema:
                type: array
                maxItems: 3
                items: {type: object, required: [event, event_id, timestamp]}
        401: Unauthorized
        404: NotFound
        422: ValidationFailed
        503: StorageUnavailable
    """
    sinks = _authorised_sinks()
    _check_event(sinks, event)
    runtime = _runtime()
    recent = samples.recent(runtime.context, event)
    if recent:
        return jsonify(recent)
    offering = next(sink for sink in sinks if sink.offers(event))
    data = offering.sample_event(event) or runtime.plugins.catalog.get(event).sample
    return jsonify([flatten(Event.new(event, data), runtime.context.public_url)])
