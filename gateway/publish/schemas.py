"""Marshmallow schemas for everything that crosses the gateway's edges.

Built once at import: schema construction is too slow for the request path.
Field lengths are bounded so a caller cannot store megabytes in a subject line.
"""

from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, fields, validate

PRIORITIES = ("low", "medium", "high", "urgent")
STATUSES = ("new", "open", "pending", "escalated", "resolved", "closed")

SHORT = validate.Length(min=1, max=200)
LONG = validate.Length(min=1, max=20_000)


class StrictSchema(Schema):
    """Unknown keys are errors: a typo must not be silently dropped."""

    class Meta:
        unknown = RAISE


class TicketCreateData(StrictSchema):
    """``data`` of an incoming ``ticket.create`` webhook, as the guide documents it (and the
    fields a plugin's ``SinkContext.create_ticket`` takes; ``metadata`` labels them for forms)."""

    subject = fields.String(required=True, validate=SHORT,
                            metadata={"label": "Subject", "description": "A one-line summary, at most 200 characters."})
    message = fields.String(required=True, validate=LONG,
                            metadata={"label": "Message", "description": "What the customer wrote."})
    customer_email = fields.Email(required=True, validate=validate.Length(max=254),
                                  metadata={"label": "Customer email", "description": "Where replies go."})
    customer_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200),
                                  metadata={"label": "Customer name"})
    priority = fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES),
                             metadata={"label": "Priority", "description": "How urgent; medium when not given."})
    category = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100),
                             metadata={"label": "Category", "description": "Free text, e.g. Billing."})


class ReceiveBody(StrictSchema):
    """The incoming webhook body: ``{"event": "ticket.create", "data": {...}}``."""

    event = fields.String(required=True, validate=validate.Length(max=100))
    data = fields.Dict(required=True)


class TicketSchema(Schema):
    """A stored ticket, as returned by the API and carried in ``ticket.*`` events."""

    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    ticket_number = fields.String(required=True)
    subject = fields.String(required=True, validate=SHORT)
    message = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20_000))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    priority = fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES))
    category = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=100))
    customer_email = fields.Email(required=True)
    customer_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    source = fields.String(load_default=None, allow_none=True)
    created_at = fields.String(load_default=None, allow_none=True)
    # No default: a ticket that was never changed has no updated_at (as ticket.created carries it).
    updated_at = fields.String(allow_none=True)


class TicketPatch(StrictSchema):
    """``PATCH /api/tickets/<id>``: the fields an admin may change."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    category = fields.String(allow_none=True, validate=validate.Length(max=100))


class AIResponseSchema(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    content = fields.String(required=True, validate=validate.Length(max=50_000))
    confidence = fields.Float(load_default=None, allow_none=True, validate=validate.Range(0, 1))
    model = fields.String(load_default=None, allow_none=True)
    created_at = fields.String(load_default=None, allow_none=True)


class ConversationSchema(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    ticket_id = fields.String(required=True)
    ticket_number = fields.String(load_default=None, allow_none=True)
    author = fields.String(required=True, validate=validate.Length(max=200))
    role = fields.String(load_default="customer", validate=validate.OneOf(("customer", "agent", "ai", "system")))
    message = fields.String(required=True, validate=LONG)
    created_at = fields.String(load_default=None, allow_none=True)


class FeedbackSchema(Schema):
    class Meta:
        unknown = INCLUDE

    id = fields.String(required=True)
    ticket_id = fields.String(required=True)
    ticket_number = fields.String(load_default=None, allow_none=True)
    rating = fields.Integer(required=True, validate=validate.Range(1, 5))
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=5_000))
    customer_email = fields.Email(load_default=None, allow_none=True)
    created_at = fields.String(load_default=None, allow_none=True)


class TicketPayload(StrictSchema):
    ticket = fields.Nested(TicketSchema, required=True)


class AIResponsePayload(StrictSchema):
    ticket = fields.Nested(TicketSchema, required=True)
    ai_response = fields.Nested(AIResponseSchema, required=True)


class AIRejectedPayload(AIResponsePayload):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2_000))


class ConversationPayload(StrictSchema):
    conversation = fields.Nested(ConversationSchema, required=True)


class FeedbackPayload(StrictSchema):
    feedback = fields.Nested(FeedbackSchema, required=True)


class PublishBody(StrictSchema):
    """``POST /api/events``: the host application publishes a catalogued event."""

    event = fields.String(required=True, validate=validate.Length(max=100))
    data = fields.Dict(required=True)


class ErrorSchema(Schema):
    """Every error response: a stable code, a human message, and per-field messages."""

    error = fields.String(required=True, metadata={"description": "A stable code, e.g. `validation_failed`."})
    message = fields.String(required=True, metadata={"description": "What went wrong, for people."})
    fields_ = fields.Dict(
        data_key="fields", keys=fields.String(), values=fields.List(fields.String()),
        metadata={"description": "One message list per dotted path to the invalid field, however deeply "
                                 "it is nested: `data.ticket.subject`, `data.sla.due_at`, `sinks[1].url`; "
                                 "`(root)` for the body as a whole.",
                  "example": {"data.sla.due_at": ["Not a valid datetime."]}})


# -- system events: what the gateway publishes about itself (builtin_events.SYSTEM_EVENT_TYPES) --

class SinkRef(StrictSchema):
    """The sink a system event is about."""

    name = fields.String(required=True, metadata={"description": "The sink's name."})
    type = fields.String(required=True, metadata={"description": "Its sink type, e.g. `generic_webhook`."})


class SystemEventPayload(StrictSchema):
    sink = fields.Nested(SinkRef, required=True)


class CircuitOpenedPayload(SystemEventPayload):
    target = fields.String(load_default=None, allow_none=True,
                           metadata={"description": "A fan-out sink's target (its subscription id) whose own "
                                                    "circuit opened; null for the sink as a whole."})
    opened_at = fields.String(required=True)
    probe_at = fields.String(required=True, metadata={"description": "When the cool-down ends and one probe "
                                                                     "delivery is let through."})
    status_code = fields.Integer(load_default=None, allow_none=True)
    last_error = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2_000))


class CircuitClosedPayload(SystemEventPayload):
    target = fields.String(load_default=None, allow_none=True)
    opened_at = fields.String(load_default=None, allow_none=True)
    closed_at = fields.String(required=True)
    open_seconds = fields.Float(load_default=None, allow_none=True)


class PausedPayload(SystemEventPayload):
    reason = fields.String(required=True, validate=validate.Length(max=2_000))
    paused_at = fields.String(required=True)
    actor = fields.String(load_default=None, allow_none=True,
                          metadata={"description": "The admin who paused it; null when the destination's "
                                                   "answer did (410 Gone, Slack's channel_is_archived...)."})
    delivery_id = fields.String(load_default=None, allow_none=True,
                                metadata={"description": "The delivery whose answer paused it."})


class ResumedPayload(SystemEventPayload):
    resumed_at = fields.String(required=True)
    actor = fields.String(required=True)
    was_paused = fields.Boolean(required=True)
    paused_reason = fields.String(load_default=None, allow_none=True)
    circuit_was_open = fields.Boolean(required=True)


class FailedDelivery(StrictSchema):
    id = fields.String(required=True)
    event = fields.String(load_default=None, allow_none=True)
    event_id = fields.String(load_default=None, allow_none=True)
    attempts = fields.Integer(load_default=None, allow_none=True)
    status_code = fields.Integer(load_default=None, allow_none=True)
    error = fields.Dict(keys=fields.String(), values=fields.String(), load_default=None, allow_none=True)
    failed_at = fields.String(load_default=None, allow_none=True)


class DeliveryFailedPayload(SystemEventPayload):
    failures = fields.Integer(required=True, validate=validate.Range(min=1),
                              metadata={"description": "Deliveries of the sink that failed since the previous "
                                                       "summary, the one below included."})
    since = fields.String(required=True, metadata={"description": "When the first of them failed."})
    window_seconds = fields.Integer(required=True)
    delivery = fields.Nested(FailedDelivery, required=True,
                             metadata={"description": "The latest of them."})


class ConfigChangedPayload(SystemEventPayload):
    action = fields.String(required=True, validate=validate.OneOf(
        ("create", "update", "enable", "disable", "delete", "rotate")))
    actor = fields.String(required=True)
    at = fields.String(required=True)
    changes = fields.Dict(keys=fields.String(), values=fields.Dict(), required=True,
                          metadata={"description": "`{key: {from, to}}` as the audit log shows it: secrets "
                                                   "`[hidden]`, URLs masked."})
