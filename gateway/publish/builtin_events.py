"""Builtin plugin: the guide's ten event types, with payload schemas and samples."""

from __future__ import annotations

from collections.abc import Callable

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


@hookimpl
def register_event_types(register: Callable[[EventType], None]) -> None:
    """The guide's ten events."""
    for event_type in BUILTIN_EVENT_TYPES:
        register(event_type)
