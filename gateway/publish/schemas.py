"""Marshmallow schemas for everything that crosses the gateway's edges.

Built once at import: schema construction is too slow for the request path.
Field lengths are bounded so a caller cannot store megabytes in a subject line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate

PRIORITIES = ("low", "medium", "high", "urgent")
STATUSES = ("new", "open", "pending", "escalated", "resolved", "closed")


def no_nul(value: str) -> None:
    """Refuse NUL in ticket text: C strings, terminals, databases and many consumers end or
    mangle the text there, so what one reader shows is not what another stores."""
    if "\x00" in value:
        raise ValidationError("NUL characters (\\u0000) are not allowed.")


TextValidators = list[Callable[[Any], Any]]
SHORT: TextValidators = [validate.Length(min=1, max=200), no_nul]
LONG: TextValidators = [validate.Length(min=1, max=20_000), no_nul]


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
    customer_name = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=200), no_nul],
                                  metadata={"label": "Customer name"})
    priority = fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES),
                             metadata={"label": "Priority", "description": "How urgent; medium when not given."})
    category = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=100), no_nul],
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
    message = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=20_000), no_nul])
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    priority = fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES))
    category = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=100), no_nul])
    customer_email = fields.Email(required=True)
    customer_name = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=200), no_nul])
    source = fields.String(load_default=None, allow_none=True)
    created_at = fields.String(load_default=None, allow_none=True)
    # No default: a ticket that was never changed has no updated_at (as ticket.created carries it).
    updated_at = fields.String(allow_none=True)


class TicketPatch(StrictSchema):
    """``PATCH /api/tickets/<id>``: the fields an admin may change."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    category = fields.String(allow_none=True, validate=[validate.Length(max=100), no_nul])


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
