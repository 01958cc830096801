"""Zapier's endpoints: the REST Hooks trigger, the "Create ticket" action, and who a key is.

* ``GET /api/zapier/me``: the connection test: the key's sink, label and events; no URLs.
* ``POST /api/zapier/hooks`` (``{"target_url" | "hookUrl", "event"}``) -> 201,
  ``DELETE /api/zapier/hooks/<id>`` -> 204 (also when it is already gone),
  ``GET /api/zapier/hooks``: the REST Hooks subscriptions.
* ``GET /api/zapier/samples/<event>``: up to 3 recent flat payloads (or one sample), the
  trigger's "perform list".
* ``POST /api/zapier/tickets`` (the ticket's fields, flat; ``Idempotency-Key``) -> 201 with
  the ticket, flat; ``GET /api/zapier/fields/ticket``: the action's input fields, in
  Zapier's ``inputFields`` format.

Authentication: ``X-API-Key`` with a key from a zapier sink's ``api_keys``, which also
picks the sink (a key listed by several zapier sinks: new subscriptions go to the first
one, or to the one named by ``sink``). Zapier keys are the only credential these endpoints
take: the gateway's admin token is not one.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from flask import Blueprint, Response, jsonify, request
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from gateway import ApiError, DestinationRefused, current_context, url_field
from gateway_zapier import samples
from gateway_zapier.payload import sample_payload
from gateway_zapier.sink import ZapierSink, zapier_sinks
from gateway_zapier.subscriptions import MAX_SUBSCRIPTIONS

bp = Blueprint("zapier", __name__, url_prefix="/api/zapier")
SOURCE = "zapier"
"""The ``source`` of tickets a Zap creates (and the namespace of its idempotency keys)."""
OPTIONAL_TICKET_FIELDS = ("customer_name", "priority", "category")


class SubscribeBody(Schema):
    """What Zapier's ``performSubscribe`` sends; ``hookUrl`` is Zapier's name for target_url."""

    class Meta:
        unknown = RAISE

    target_url = url_field(load_default=None)
    hookUrl = url_field(load_default=None)  # noqa: N815 - Zapier's own name for target_url
    event = fields.String(required=True, validate=validate.Length(min=1, max=100))
    sink = fields.String(load_default=None, validate=validate.Length(min=1, max=64))

    @validates_schema
    def _one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        target, hook = data.get("target_url"), data.get("hookUrl")
        if not target and not hook:
            raise ValidationError("Give the URL to deliver to as target_url (or Zapier's hookUrl).", "target_url")
        if target and hook and target != hook:
            raise ValidationError("target_url and hookUrl differ; send one of them.", "hookUrl")


class Subscription(Schema):
    """A subscription as the endpoints answer it (for the OpenAPI document)."""

    id = fields.String(required=True)
    target_url = fields.String(required=True)
    event = fields.String(required=True)
    created_at = fields.String(required=True)
    sink = fields.String(required=True)
    key_label = fields.String(required=True, allow_none=True,
                              metadata={"description": "The label of the API key that subscribed it."})


class ZapierIdentity(Schema):
    """``GET /api/zapier/me``: who an API key is (for the OpenAPI document)."""

    sink = fields.String(required=True, metadata={"description": "The zapier sink the key belongs to."})
    label = fields.String(required=True, allow_none=True,
                          metadata={"description": "The key's label in `api_keys` (null when it has none)."})
    events = fields.List(fields.String(), required=True,
                         metadata={"description": "The events a Zap with this key may subscribe to."})
    create_tickets = fields.Boolean(required=True, metadata={"description": "Whether the key may create tickets."})


SUBSCRIBE_BODY = SubscribeBody()


@dataclasses.dataclass(frozen=True)
class Access:
    """What a request's ``X-API-Key`` opens: the enabled zapier sinks it may use (the
    first one is where new subscriptions go) and the label of the key."""

    sinks: list[ZapierSink]
    label: str | None


def _same(given: bytes, expected: str) -> bool:
    return hmac.compare_digest(given, expected.encode("utf-8"))


def _match(sinks: list[ZapierSink], header: str) -> Access | None:
    """Whom ``header`` opens: compared with every key (no early exit), so the time taken
    says nothing about which matched; None for no key."""
    given = header.encode("utf-8")
    hits = [(sink, [key for key in sink.api_keys if _same(given, key["key"])]) for sink in sinks]
    matched = [(sink, keys) for sink, keys in hits if keys]
    if not matched:
        return None
    return Access([sink for sink, _ in matched], matched[0][1][0]["label"])


def _access() -> Access:
    """The request's ``X-API-Key``, checked against every enabled zapier sink's keys behind
    the gateway's credential throttle (401 for a wrong key, 429 once the address has had too
    many wrong credentials; 404 when no zapier sink is configured)."""
    context = current_context()
    sinks = [s for s in zapier_sinks(context) if s.enabled]
    if not sinks:
        raise ApiError(404, "zapier_not_configured", "No zapier sink is configured: add a [[sinks]] table "
                       'with type = "zapier" and api_keys to the gateway config.')
    header = request.headers.get("X-API-Key")
    if not header:
        raise ApiError(401, "unauthorized", "Send an API key from the zapier sink's api_keys in the "
                       "X-API-Key header.")
    access = context.check_credential(header, lambda given: _match(sinks, given))
    if access is None:
        raise ApiError(401, "unauthorized", "The X-API-Key is not one of the zapier sink's api_keys.")
    return access


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
    catalog = current_context().event_types
    if event not in catalog:
        raise ApiError(422, "unknown_event", f"Unknown event {event!r}.",
                       {"event": [f"Unknown event {event!r}; known events: {', '.join(catalog.names())}."]})
    if not any(sink.offers(event) for sink in sinks):
        offered = sorted({e for sink in sinks for e in sink.options.get("events") or ()})
        raise ApiError(422, "event_not_allowed", f"Event {event!r} is not offered to Zapier.",
                       {"event": [f"Not in the zapier sink's events; allowed: {', '.join(offered)}."]})


def _json_object(example: str) -> dict[str, Any]:
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", f"The body must be a JSON object, e.g. {example}.")
    return data


def _subscribe_body() -> dict[str, Any]:
    data = _json_object('{"hookUrl": "https://hooks.zapier.com/...", "event": "ticket.created"}')
    try:
        return SUBSCRIBE_BODY.load(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", "The request body has invalid fields.",
                       exc.messages_dict) from None


@bp.get("/me")
def me() -> Response:
    """Who the request's API key is: Zapier's connection test.
    ---
    get:
      tags: [zapier]
      summary: Who an API key is (the connection test)
      description: >-
        The zapier sink the `X-API-Key` belongs to, the key's label and the events it may
        subscribe to. No subscription and no URL: Zapier shows the test's answer to whoever
        connects an account.
      security: [{zapierApiKey: []}]
      responses:
        200:
          description: The key's sink, label and events.
          content:
            application/json:
              schema: ZapierIdentity
        401: Unauthorized
        404: NotFound
    """
    access = _access()
    sink = access.sinks[0]
    return jsonify({"sink": sink.name, "label": access.label,
                    "events": [e for e in current_context().event_types.names() if any(s.offers(e)
                                                                                       for s in access.sinks)],
                    "create_tickets": any(s.creates_tickets for s in access.sinks)})


@bp.post("/hooks")
def subscribe() -> tuple[Response, int, dict[str, str]]:
    """Zapier's performSubscribe: remember where to send an event.
    ---
    post:
      tags: [zapier]
      summary: Subscribe a Zap (REST Hooks)
      description: >-
        `X-API-Key` (a key from a zapier sink's `api_keys`) picks the
        sink; `event` must be one of its `events`. Zapier's `hookUrl` is accepted for
        `target_url`. A URL the gateway would refuse to deliver to (not http(s); a loopback,
        private, link-local... address, or a name resolving only to such addresses, unless
        `delivery.allow_private_networks`) is a 422 `validation_failed` on that field.
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
              schema: Subscription
        400: BadRequest
        401: Unauthorized
        404: NotFound
        409: Conflict
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    access = _access()
    body = _subscribe_body()
    sink = _choose(access.sinks, body["sink"])
    _check_event([sink], body["event"])
    field = "target_url" if body["target_url"] else "hookUrl"
    try:
        # Deliveries to it would be refused (and whoever may subscribe must not reach the
        # gateway's own network through it): say so now, not in the delivery log.
        current_context().check_destination(body[field])
    except DestinationRefused as refused:
        raise ApiError(422, "validation_failed", "The request body has invalid fields.",
                       {field: [f"Deliveries to this URL would be refused: {refused}."]}) from None
    if sink.subscriptions.count() >= MAX_SUBSCRIPTIONS:
        raise ApiError(409, "too_many_subscriptions", f"The zapier sink {sink.name!r} already has "
                       f"{MAX_SUBSCRIPTIONS} subscriptions; delete unused ones first.")
    sub = sink.subscriptions.create(body["event"], body[field], access.label)
    return jsonify(sub.to_json()), 201, {"Location": f"{bp.url_prefix}/hooks/{sub.id}"}


@bp.delete("/hooks/<sub_id>")
def unsubscribe(sub_id: str) -> tuple[str, int]:
    """Zapier's performUnsubscribe: forget a subscription.
    ---
    delete:
      tags: [zapier]
      summary: Unsubscribe a Zap
      description: >-
        204 also when the subscription is already gone: the gateway removes one itself when
        Zapier answers a delivery with 410, and Zapier unsubscribes later, when the Zap is
        turned off or deleted. Either way it is gone.
      security: [{zapierApiKey: []}]
      responses:
        204: {description: The subscription no longer exists.}
        401: Unauthorized
        404: NotFound
        503: StorageUnavailable
    """
    for sink in _access().sinks:
        if sink.subscriptions.delete(sub_id):
            break
    return "", 204


@bp.get("/hooks")
def list_hooks() -> Response:
    """Every subscription of the sinks the key may use, oldest first.
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
              schema: {type: object, required: [hooks], properties: {hooks: {type: array, items: Subscription}}}
        401: Unauthorized
        404: NotFound
        503: StorageUnavailable
    """
    hooks = [sub.to_json() for sink in _access().sinks for sub in sink.subscriptions.all()]
    return jsonify({"hooks": hooks})


@bp.get("/samples/<event>")
def sample_payloads(event: str) -> Response:
    """Zapier's performList: recent payloads of ``event``, or one realistic sample.
    ---
    get:
      tags: [zapier]
      summary: Sample payloads of an event
      description: >-
        Up to three recent payloads of the key's sinks, newest first, flat as Zapier receives
        them, or one sample in the same shape (with the same `id` on every call) while there
        are none.
      security: [{zapierApiKey: []}]
      parameters:
        - {name: event, in: path, required: true, schema: {type: string, x-values: event-types}}
      responses:
        200:
          description: Flat payloads (`id`, `event`, `event_id`, `timestamp` and the event's fields).
          content:
            application/json:
              schema:
                type: array
                maxItems: 3
                items: {type: object, required: [id, event, event_id, timestamp]}
        401: Unauthorized
        404: NotFound
        422: ValidationFailed
        503: StorageUnavailable
    """
    sinks = _access().sinks
    _check_event(sinks, event)
    context = current_context()
    offering = [sink for sink in sinks if sink.offers(event)]
    recent = samples.recent(context, [sink.name for sink in offering], event)
    if recent:
        return jsonify(recent)
    sink = offering[0]
    data = sink.sample_event(event) or context.event_types.get(event).sample
    return jsonify([sample_payload(sink.name, event, data, context.public_url)])


@bp.post("/tickets")
def create_ticket() -> tuple[Response, int, dict[str, str]]:
    """The "Create ticket" action: a ticket from a Zap, through the receive endpoint's path.
    ---
    post:
      tags: [zapier]
      summary: Create a ticket (Zapier action)
      description: >-
        The ticket's fields, flat (`GET /api/zapier/fields/ticket` describes them); optional
        fields sent empty count as not given. Validated, numbered and stored as the receive
        endpoint does, with its `ticket.created` event. An `Idempotency-Key` (map one in
        the Zap, e.g. an email's message id) seen before from Zapier within
        `idempotency_ttl` returns the first ticket with 200 and `Idempotent-Replayed: true`.
      security: [{zapierApiKey: []}]
      parameters:
        - name: Idempotency-Key
          in: header
          required: false
          schema: {type: string, minLength: 1, maxLength: 255}
      requestBody:
        required: true
        content:
          application/json:
            schema: TicketCreateData
      responses:
        201:
          description: The ticket, flat, with its `id` (and `ticket_url` when `public_url` is set).
          headers:
            Location: {schema: {type: string}}
          content:
            application/json:
              schema: TicketSchema
        200:
          description: The Idempotency-Key was seen before; the first ticket, nothing new stored.
          headers:
            Idempotent-Replayed: {schema: {type: string, enum: ["true"]}}
          content:
            application/json:
              schema: TicketSchema
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    access = _access()
    if not any(sink.creates_tickets for sink in access.sinks):
        raise ApiError(403, "create_tickets_disabled", "This zapier sink does not create tickets "
                       "(create_tickets = false in its configuration).")
    fields_given = _json_object('{"subject": "...", "message": "...", "customer_email": "..."}')
    # Zapier sends an optional field the Zap leaves empty as "" (or null): not given.
    fields_given = {key: value for key, value in fields_given.items()
                    if not (key in OPTIONAL_TICKET_FIELDS and value in ("", None))}
    context = current_context()
    created = context.create_ticket(fields_given, source=SOURCE,
                                    idempotency_key=request.headers.get("Idempotency-Key"))
    ticket = dict(created.ticket)
    if context.public_url:
        ticket["ticket_url"] = f"{context.public_url.rstrip('/')}/tickets/{ticket['id']}"
    if created.replayed:
        return jsonify(ticket), 200, {"Idempotent-Replayed": "true"}
    return jsonify(ticket), 201, {"Location": f"/api/tickets/{ticket['id']}"}


@bp.get("/fields/ticket")
def ticket_fields() -> Response:
    """The "Create ticket" action's input fields, in Zapier's ``inputFields`` format.
    ---
    get:
      tags: [zapier]
      summary: The Create ticket action's input fields
      description: >-
        One object per field, as a Zapier app's `inputFields` takes them (`key`, `label`,
        `required`, `type`, `helpText`, `choices`, `default`), so an app can build its
        action form from it (a dynamic field function returning this array).
      security: [{zapierApiKey: []}]
      responses:
        200:
          description: The fields, in order.
          content:
            application/json:
              schema:
                type: array
                items:
                  type: object
                  required: [key, label, required, type]
                  properties:
                    key: {type: string}
                    label: {type: string}
                    required: {type: boolean}
                    type: {type: string, enum: [string, text]}
                    helpText: {type: string}
                    default: {type: string}
                    choices:
                      type: array
                      items:
                        type: object
                        properties: {value: {type: string}, label: {type: string}, sample: {type: string}}
        401: Unauthorized
        404: NotFound
    """
    _access()
    return jsonify([_zapier_field(name, field) for name, field in current_context().ticket_schema().fields.items()])


LONG_TEXT = 1000
"""A string field allowing more than this many characters gets a multi-line input."""


def _zapier_field(name: str, field: fields.Field) -> dict[str, Any]:
    """One marshmallow field as a Zapier input field (its label, help text, choices and
    default come from the core's schema, so the form cannot drift from what is accepted)."""
    described: dict[str, Any] = {"key": name, "label": field.metadata.get("label") or name.replace("_", " ").title(),
                                 "required": bool(field.required), "type": "string"}
    validators = list(field.validators)
    if any(isinstance(v, validate.Length) and (v.max or 0) > LONG_TEXT for v in validators):
        described["type"] = "text"
    if field.metadata.get("description"):
        described["helpText"] = field.metadata["description"]
    for validator in validators:
        if isinstance(validator, validate.OneOf):
            described["choices"] = [{"value": str(c), "label": str(c).title(), "sample": str(c)}
                                    for c in validator.choices]
    if isinstance(field.load_default, str):
        described["default"] = field.load_default
    return described
