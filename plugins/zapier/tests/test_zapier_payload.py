"""The flat payload a Zap receives for each event."""

import pytest

from gateway import Event
from gateway_zapier.payload import flatten


@pytest.fixture
def sample_ticket(event_samples):
    """The sample ticket, as ticket.created carries it."""
    return event_samples["ticket.created"]["ticket"]


def test_ticket_fields_are_at_the_top_level(event_samples, sample_ticket):
    event = Event.new("ticket.created", event_samples["ticket.created"])
    flat = flatten(event)
    assert flat["event"] == "ticket.created" and flat["event_id"] == event.id
    assert flat["timestamp"] == event.timestamp
    for key in ("ticket_number", "subject", "customer_email", "customer_name", "status", "priority", "category",
                "message", "created_at"):
        assert flat[key] == sample_ticket[key]
    assert flat["ticket_id"] == sample_ticket["id"]
    assert not any(isinstance(value, dict) for value in flat.values())
    assert "ticket_url" not in flat


def test_ai_response_and_reason(event_samples, sample_ticket):
    flat = flatten(Event.new("ai.response.rejected", event_samples["ai.response.rejected"]))
    assert flat["ai_response_content"].startswith("Hi Jane")
    assert flat["ai_response_confidence"] == 0.62 and flat["ai_response_id"] == "air_7c1d"
    assert flat["reason"] == event_samples["ai.response.rejected"]["reason"]
    assert flat["subject"] == sample_ticket["subject"]


def test_conversation_and_feedback_keep_ticket_and_customer_names_plain(event_samples, sample_ticket):
    flat = flatten(Event.new("conversation.added", event_samples["conversation.added"]), "https://s.example.com")
    assert flat["ticket_number"] == "TKT-2026-042" and flat["ticket_id"] == sample_ticket["id"]
    assert flat["conversation_author"] == "Jane Doe" and flat["conversation_message"] == "Thanks, that worked!"
    assert flat["ticket_url"] == f"https://s.example.com/tickets/{sample_ticket['id']}"
    flat = flatten(Event.new("feedback.received", event_samples["feedback.received"]))
    assert flat["feedback_rating"] == 5 and flat["customer_email"] == "jane.doe@example.com"


def test_clashing_and_nested_names_never_overwrite_each_other():
    data = {"event": "spoof", "order": {"id": 7, "shipping": {"city": "Oslo"}}, "order_id": 8}
    flat = flatten(Event.new("shop.ordered", data))
    assert flat["event"] == "shop.ordered" and flat["data_event"] == "spoof"
    assert flat["order_id"] == 7 and flat["data_order_id"] == 8
    assert flat["order_shipping_city"] == "Oslo"
