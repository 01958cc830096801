"""Builtin plugin: the guide's ten event types and the gateway's system events (what it
publishes about its own sinks: :mod:`gateway.publish.system_events`), with payload schemas
and samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema

from gateway.events import EventType
from gateway.hookspecs import hookimpl
from gateway.publish import schemas

SAMPLE_TICKET = {
    "id": "3f2b8c1e-6a4d-4e8b-9a51-0c7d2e9f1a24",
    "ticket_number": "TKT-2026-042",
    "subject": "Cannot log in after password reset",
    "message": "I reset my password this morning and now the app says my account is locked.",
    "status": "new",
    "priority": "high",
    "category": "Account",
    "customer_email": "jane.doe@example.com",
    "customer_name": "Jane Doe",
    "source": "webhook",
    "created_at": "2026-01-15T10:30:00.000Z",
}
SAMPLE_AI_RESPONSE = {
    "id": "air_7c1d",
    "content": "Hi Jane, your account was locked after several failed attempts. I've unlocked it; "
    "please try logging in again with your new password.",
    "confidence": 0.62,
    "model": "support-assistant-1",
    "created_at": "2026-01-15T10:31:12.000Z",
}
SAMPLE_CONVERSATION = {
    "id": "msg_51a9",
    "ticket_id": SAMPLE_TICKET["id"],
    "ticket_number": SAMPLE_TICKET["ticket_number"],
    "author": "Jane Doe",
    "role": "customer",
    "message": "Thanks, that worked!",
    "created_at": "2026-01-15T10:40:02.000Z",
}
SAMPLE_FEEDBACK = {
    "id": "fb_90e2",
    "ticket_id": SAMPLE_TICKET["id"],
    "ticket_number": SAMPLE_TICKET["ticket_number"],
    "rating": 5,
    "comment": "Quick and friendly.",
    "customer_email": "jane.doe@example.com",
    "created_at": "2026-01-15T11:02:45.000Z",
}


def _ticket_event(name: str, title: str, description: str, **overrides: str) -> EventType:
    return EventType(name, description, schemas.TicketPayload, {"ticket": {**SAMPLE_TICKET, **overrides}},
                     title=title)


def _ai_event(name: str, title: str, description: str) -> EventType:
    return EventType(name, description, schemas.AIResponsePayload,
                     {"ticket": SAMPLE_TICKET, "ai_response": SAMPLE_AI_RESPONSE}, title=title)


# A changed ticket carries updated_at (PATCH /api/tickets sets it); a new one does not: the
# samples have the keys live events have (Zapier builds a Zap's fields from samples).
UPDATED_AT = "2026-01-15T11:05:00.000Z"

BUILTIN_EVENT_TYPES = (
    _ticket_event("ticket.created", "New ticket", "New ticket created"),
    _ticket_event("ticket.updated", "Ticket updated", "Ticket updated", status="open", updated_at=UPDATED_AT),
    _ticket_event("ticket.resolved", "Ticket resolved", "Ticket resolved", status="resolved",
                  updated_at=UPDATED_AT),
    _ticket_event("ticket.escalated", "Ticket escalated", "Ticket escalated", status="escalated",
                  priority="urgent", updated_at=UPDATED_AT),
    _ai_event("ai.response.generated", "AI response generated", "AI response generated"),
    _ai_event("ai.response.requires_review", "AI response needs review", "AI response needs review"),
    _ai_event("ai.response.approved", "AI response approved", "AI response approved"),
    EventType("ai.response.rejected", "AI response rejected", schemas.AIRejectedPayload,
              {"ticket": SAMPLE_TICKET, "ai_response": SAMPLE_AI_RESPONSE,
               "reason": "The account was not locked; the customer typed the old password."},
              title="AI response rejected"),
    EventType("conversation.added", "New conversation message", schemas.ConversationPayload,
              {"conversation": SAMPLE_CONVERSATION}, title="New message",
              ordering_key="data.conversation.ticket_id"),
    EventType("feedback.received", "Feedback received", schemas.FeedbackPayload,
              {"feedback": SAMPLE_FEEDBACK}, title="Feedback received", ordering_key="data.feedback.ticket_id"),
)


SAMPLE_SINK = {"name": "crm", "type": "generic_webhook"}
PAUSED_REASON = ("Slack answered HTTP 410 channel_is_archived: the webhook's channel is archived: unarchive it "
                 "or use a webhook for another channel, then resume the sink")


def _system_event(name: str, title: str, description: str, schema: type[Schema], sample: dict[str, Any]
                  ) -> EventType:
    # About a sink, not a ticket: ordered by the sink's name on sinks with ordering = "per_ticket"
    # (opened before closed), and only for sinks that name it (see EventType.system).
    return EventType(name, description, schema, {"sink": SAMPLE_SINK, **sample}, title=title,
                     ordering_key="data.sink.name", system=True)


SYSTEM_EVENT_TYPES = (
    _system_event("sink.circuit_opened", "Sink circuit opened",
                  "A sink's destination kept failing: its circuit opened, and its deliveries wait (no attempts "
                  "charged) until a probe gets through", schemas.CircuitOpenedPayload,
                  {"target": None, "opened_at": "2026-01-15T10:32:05.120Z", "probe_at": "2026-01-15T10:32:35.120Z",
                   "status_code": 503, "last_error": "http_status: HTTP 503"}),
    _system_event("sink.circuit_closed", "Sink circuit closed",
                  "A sink's destination answers again: its circuit closed and what waited is being delivered",
                  schemas.CircuitClosedPayload,
                  {"target": None, "opened_at": "2026-01-15T10:32:05.120Z", "closed_at": "2026-01-15T10:41:35.480Z",
                   "open_seconds": 570.36}),
    _system_event("sink.paused", "Sink paused",
                  "A sink was paused (its destination said it is gone: a 410, Slack's channel_is_archived); "
                  "its deliveries wait until an admin resumes it", schemas.PausedPayload,
                  {"sink": {"name": "on-call", "type": "slack"}, "reason": PAUSED_REASON,
                   "paused_at": "2026-01-15T10:35:12.004Z", "actor": None,
                   "delivery_id": "dlv_5b0e3c9d2f8a4b71a6e0c4d3f2b1a098"}),
    _system_event("sink.resumed", "Sink resumed",
                  "An admin resumed a paused sink (or one whose circuit was open): what waited is being delivered",
                  schemas.ResumedPayload,
                  {"sink": {"name": "on-call", "type": "slack"}, "resumed_at": "2026-01-15T11:02:40.310Z",
                   "actor": "admin", "was_paused": True,
                   "paused_reason": PAUSED_REASON, "circuit_was_open": False}),
    _system_event("delivery.failed", "Deliveries failed",
                  "Deliveries of a sink failed for good (retries exhausted, or refused): one summary per sink "
                  "at most every delivery.failure_summary_interval, counting the failures since the previous one",
                  schemas.DeliveryFailedPayload,
                  {"failures": 37, "since": "2026-01-15T10:33:00.412Z", "window_seconds": 300,
                   "delivery": {"id": "dlv_9c4e1f7a2b3d4e5f6a7b8c9d0e1f2a3b", "event": "ticket.created",
                                "event_id": "evt_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d", "attempts": 8,
                                "status_code": 503,
                                "error": {"code": "http_status", "message": "HTTP 503 (no retries left)"},
                                "failed_at": "2026-01-15T10:37:59.871Z"}}),
    _system_event("sink.config_changed", "Sink configuration changed",
                  "An admin changed a sink through the sinks API or the CLI (as the audit log shows it: "
                  "secrets hidden)", schemas.ConfigChangedPayload,
                  {"action": "update", "actor": "admin", "at": "2026-01-15T09:58:13.250Z",
                   "changes": {"url": {"from": "https://crm.example.com/hooks/…",
                                       "to": "https://crm2.example.com/hooks/…"},
                               "secret": {"from": "[hidden]", "to": "[hidden]"}}}),
)


@hookimpl
def register_event_types(register: Callable[[EventType], None]) -> None:
    """The guide's ten events and the system events."""
    for event_type in (*BUILTIN_EVENT_TYPES, *SYSTEM_EVENT_TYPES):
        register(event_type)
