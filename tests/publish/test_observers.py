"""An observer plugin's bug must not turn a stored, acknowledged ticket into an error."""

import logging

from gateway import hookimpl


class BrokenObserver:
    __name__ = "broken_observer"

    @hookimpl
    def event_published(self, event, sinks):
        raise RuntimeError("observer bug")


def test_a_failing_event_published_hook_still_acknowledges_the_stored_ticket(make_client, caplog):
    client = make_client(plugins=[BrokenObserver()])
    body = {"event": "ticket.create", "data": {"subject": "Hook", "message": "m", "customer_email": "a@example.com"}}
    with caplog.at_level(logging.ERROR, logger="gateway.publish.publisher"):
        created = client.post("/api/webhooks/receive", json=body, headers={"Idempotency-Key": "k-1"})
    assert created.status_code == 201
    assert "event_published hook failed" in caplog.text
    again = client.post("/api/webhooks/receive", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.get_json()["ticket"]["ticket_number"] == created.get_json()["ticket"]["ticket_number"]


class RecordingObserver:
    __name__ = "recording_observer"

    def __init__(self):
        self.events = []

    @hookimpl
    def event_published(self, event, sinks):
        self.events.append(event)


def test_observers_see_the_assigned_ticket_number_not_the_placeholder(make_client):
    observer = RecordingObserver()
    client = make_client(plugins=[observer])
    body = {"event": "ticket.create", "data": {"subject": "N", "message": "m", "customer_email": "a@example.com"}}
    created = client.post("/api/webhooks/receive", json=body).get_json()["ticket"]
    [event] = observer.events
    assert event.name == "ticket.created"
    assert event.data["ticket"]["ticket_number"] == created["ticket_number"]
    assert created["ticket_number"].startswith("TKT-")
