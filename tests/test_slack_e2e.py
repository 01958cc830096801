"""Slack end to end: a ticket POSTed to the gateway, a real worker process, a local server
playing Slack (its status codes and plain-text bodies)."""

import itertools

import pytest
from delivery_support import Answer, SinkServer, start_worker, wait_until
from served_gateway import write_config

ADMIN = "admin-token-1"
PUBLIC_URL = "https://support.example.com"


def slack_config(redis_url, tmp_path, url, **sink):
    return {"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": ADMIN,
                        "public_url": PUBLIC_URL},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": [{"name": "slack", "type": "slack", "url": url, "events": ["ticket.created"],
                       "username": "Support", **sink}]}


@pytest.fixture
def gateway(make_client, redis_url, tmp_path):
    """Start a gateway on a Slack server: the web app in-process, the worker as a real
    process (with ``burst``: it delivers what is ready, then exits)."""
    started = []

    def start(slack, *worker_args, **sink):
        config = slack_config(redis_url, tmp_path, slack.url, **sink)
        client = make_client(config)
        config_path = write_config(tmp_path / "gateway.toml", config)

        def run_worker(*args):
            worker = start_worker(config_path, tmp_path / f"worker-{len(started)}.log", *args, plain=False)
            started.append(worker)
            return worker

        return client, run_worker

    yield start
    for worker in started:
        worker.stop()


def burst(run_worker):
    """Run a burst worker to completion: afterwards, everything that could be sent was."""
    worker = run_worker("--burst")
    assert worker.process.wait(60) == 0, worker.log()


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


def test_tickets_become_slack_messages_at_about_one_per_second(gateway):
    with SinkServer() as slack:
        client, run_worker = gateway(slack)
        ticket = create_ticket(client)
        for n in range(2):
            create_ticket(client, subject=f"Ticket {n}")
        burst(run_worker)
        assert slack.count() == 3
        [first] = [r for r in slack.received if "Printer on fire" in r.json["text"]]
        message = first.json
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
        # Slack's limit for incoming webhooks is the slack type's default rate limit.
        times = sorted(r.at for r in slack.received)
        assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times))


def test_rate_limited_then_ok_is_one_message_sent_after_retry_after(gateway):
    with SinkServer() as slack:
        slack.answer(Answer(429, b"rate_limited", {"Retry-After": "1"}), Answer(200, b"ok"))
        client, run_worker = gateway(slack)
        worker = run_worker()
        create_ticket(client)
        [delivery] = wait_until(lambda: [d for d in deliveries(client) if d["status"] == "delivered"],
                                what="delivered after the retry")
        worker.stop()
        first, second = slack.received  # exactly two requests: the refused one and the message
        assert first.body == second.body
        assert second.at - first.at >= 0.95, "retried before Retry-After"
        assert delivery["attempts"] == 2 and delivery["last_status_code"] == 200


def test_an_archived_channel_pauses_the_sink_with_slacks_reason(gateway):
    with SinkServer(Answer(410, b"channel_is_archived")) as slack:
        client, run_worker = gateway(slack)
        create_ticket(client)
        burst(run_worker)
        state = sink_state(client)
        assert state["state"] == "paused" and "channel_is_archived" in state["paused_reason"]
        assert [(d["status"], d["attempts"]) for d in deliveries(client)] == [("failed", 1)]
        # While paused nothing more goes to Slack: the next ticket waits for a resume.
        create_ticket(client, subject="Second")
        burst(run_worker)
        assert slack.count() == 1
        assert sorted(d["status"] for d in deliveries(client)) == ["failed", "pending"]
