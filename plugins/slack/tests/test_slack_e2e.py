"""Slack end to end: a ticket POSTed to the gateway, a real worker process, a local server
playing Slack (its status codes and plain-text bodies)."""

import itertools

import pytest

from gateway.testing import Reply, wait_until

ADMIN = "admin-token-1"
PUBLIC_URL = "https://support.example.com"
DEADLINE_S = 90.0  # generous: CI runs three test workers on two cores; a pass returns at once


def slack_config(url, **sink):
    return {"gateway": {"admin_token": ADMIN, "public_url": PUBLIC_URL},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": [{"name": "slack", "type": "slack", "url": url, "events": ["ticket.created"],
                       "username": "Support", **sink}]}


@pytest.fixture
def gateway(make_client, gateway_worker):
    """Start a gateway on a Slack server: the web app in-process, the worker as a real
    process (with ``burst``: it delivers what is ready, then exits)."""

    def start(slack, **sink):
        config = slack_config(slack.url, **sink)
        return make_client(config), lambda *args: gateway_worker(config, *args)

    return start


def burst(run_worker):
    """Run a burst worker to completion: afterwards, everything that could be sent was."""
    worker = run_worker("--burst")
    assert worker.wait() == 0, worker.output()


def create_ticket(client, subject="Printer on fire", **data):
    response = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": subject, "message": "Smoke & flames <b>now</b>", "customer_email": "ann@example.com",
        "customer_name": "Ann", "priority": "urgent", "category": "Hardware", **data}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["ticket"]


def deliveries(client):
    response = client.get("/api/deliveries?sink=slack", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200
    return response.get_json()["deliveries"]


def sink_state(client):
    response = client.get("/api/sinks", headers={"Authorization": f"Bearer {ADMIN}"})
    return next(s for s in response.get_json()["sinks"] if s["name"] == "slack")


def test_tickets_become_slack_messages_at_about_one_per_second(gateway, recording_sink):
    slack = recording_sink
    client, run_worker = gateway(slack)
    ticket = create_ticket(client)
    for n in range(2):
        create_ticket(client, subject=f"Ticket {n}")
    burst(run_worker)
    assert len(slack.requests) == 3
    [first] = [r for r in slack.requests if "Printer on fire" in r.json()["text"]]
    message = first.json()
    assert first.headers["Content-Type"].startswith("application/json")
    assert message["username"] == "Support"
    assert message["text"] == f"New ticket: {ticket['ticket_number']}: Printer on fire"
    [attachment] = message["attachments"]
    assert attachment["color"] == "#2F80ED"
    assert attachment["title"] == f"{ticket['ticket_number']}: Printer on fire"
    assert attachment["title_link"] == f"{PUBLIC_URL}/tickets/{ticket['id']}"
    assert attachment["text"] == "Smoke &amp; flames &lt;b&gt;now&lt;/b&gt;"
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "Priority": "urgent", "Status": "new", "Category": "Hardware", "Customer": "Ann (ann@example.com)"}
    assert [d["status"] for d in deliveries(client)] == ["delivered"] * 3
    # Slack's limit for incoming webhooks (one per second) is the slack type's default rate
    # limit: three messages span about two seconds. Measured where they arrive, so a loaded
    # machine may delay one by a fraction of a second; unlimited they would arrive together.
    times = sorted(r.received_at for r in slack.requests)
    assert times[-1] - times[0] >= 1.5
    assert all(later - earlier >= 0.5 for earlier, later in itertools.pairwise(times))


def test_rate_limited_then_ok_is_one_message_sent_after_retry_after(gateway, recording_sink):
    slack = recording_sink.reply(Reply(429, "rate_limited", {"Retry-After": "1"}), Reply(200, "ok"))
    client, run_worker = gateway(slack)
    worker = run_worker()
    create_ticket(client)
    [delivery] = wait_until(lambda: [d for d in deliveries(client) if d["status"] == "delivered"],
                            what="delivered after the retry", timeout=DEADLINE_S)
    worker.stop()
    first, second = slack.requests  # exactly two requests: the refused one and the message
    assert first.body == second.body
    assert second.received_at - first.received_at >= 0.95, "retried before Retry-After"
    assert delivery["attempts"] == 2 and delivery["last_status_code"] == 200


def test_an_archived_channel_pauses_the_sink_with_slacks_reason(gateway, recording_sink):
    slack = recording_sink
    slack.default = Reply(410, "channel_is_archived")
    client, run_worker = gateway(slack)
    create_ticket(client)
    burst(run_worker)
    state = sink_state(client)
    assert state["state"] == "paused" and "channel_is_archived" in state["paused_reason"]
    assert [(d["status"], d["attempts"]) for d in deliveries(client)] == [("failed", 1)]
    # While paused nothing more goes to Slack: the next ticket waits for a resume.
    create_ticket(client, subject="Second")
    burst(run_worker)
    assert len(slack.requests) == 1
    assert sorted(d["status"] for d in deliveries(client)) == ["failed", "pending"]
