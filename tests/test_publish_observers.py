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
    with caplog.at_level(logging.ERROR, logger="gateway.bus"):
        created = client.post("/api/webhooks/receive", json=body, headers={"Idempotency-Key": "k-1"})
    assert created.status_code == 201
    assert "event_published hook failed" in caplog.text
    again = client.post("/api/webhooks/receive", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.get_json()["ticket"]["ticket_number"] == created.get_json()["ticket"]["ticket_number"]
