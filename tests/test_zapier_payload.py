"""The flat payload a Zap receives for each event."""

from gateway_zapier.payload import flatten

from gateway import Event
from gateway.builtin_events import BUILTIN_EVENT_TYPES, SAMPLE_TICKET

SAMPLES = {t.name: t.sample for t in BUILTIN_EVENT_TYPES}


def test_ticket_fields_are_at_the_top_level():
    event = Event.new("ticket.created", SAMPLES["ticket.created"])
    flat = flatten(event)
    assert flat["event"] == "ticket.created" and flat["event_id"] == event.id
    assert flat["timestamp"] == event.timestamp
    for key in ("ticket_number", "subject", "customer_email", "customer_name", "status", "priority", "category",
                "message", "created_at"):
        assert flat[key] == SAMPLE_TICKET[key]
    assert flat["ticket_id"] == SAMPLE_TICKET["id"]
    assert not any(isinstance(value, dict) for value in flat.values())
    assert "ticket_url" not in flat


def test_ai_response_and_reason():
    flat = flatten(Event.new("ai.response.rejected", SAMPLES["ai.response.rejected"]))
    assert flat["ai_response_content"].startswith("Hi Jane")
    assert flat["ai_response_confidence"] == 0.62 and flat["ai_response_id"] == "air_7c1d"
    assert flat["reason"] == SAMPLES["ai.response.rejected"]["reason"]
    assert flat["subject"] == SAMPLE_TICKET["subject"]


def test_conversation_and_feedback_keep_ticket_and_customer_names_plain():
    flat = flatten(Event.new("conversation.added", SAMPLES["conversation.added"]), "https://s.example.com")
    assert flat["ticket_number"] == "TKT-2026-042" and flat["ticket_id"] == SAMPLE_TICKET["id"]
    assert flat["conversation_author"] == "Jane Doe" and flat["conversation_message"] == "Thanks, that worked!"
    assert flat["ticket_url"] == f"https://s.example.com/tickets/{SAMPLE_TICKET['id']}"
    flat = flatten(Event.new("feedback.received", SAMPLES["feedback.received"]))
    assert flat["feedback_rating"] == 5 and flat["customer_email"] == "jane.doe@example.com"


def test_clashing_and_nested_names_never_overwrite_each_other():
    data = {"event": "spoof", "order": {"id": 7, "shipping": {"city": "Oslo"}}, "order_id": 8}
    flat = flatten(Event.new("shop.ordered", data))
    assert flat["event"] == "shop.ordered" and flat["data_event"] == "spoof"
    assert flat["order_id"] == 7 and flat["data_order_id"] == 8
    assert flat["order_shipping_city"] == "Oslo"
