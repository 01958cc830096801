"""The product path as a user runs it: a ticket POSTed to the receive endpoint, a real
``python -m gateway.delivery.worker`` process, the generic webhook sink, then the CLI commands
(``deliveries``, ``delivery show``, ``sinks``, ``replay``, ``send-test``, ``sinks pause``/``resume``)
on the same config file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.configs import write_config
from support.processes import start_worker, wait_until
from support.servers import Answer, SinkServer

from gateway.cli import cli
from gateway.runtime import Runtime
from gateway.signing import hex_signature
from gateway.web.app import create_app

SECRET = "guide-secret"


@pytest.fixture
def setup(redis_client: Any, redis_url: str, tmp_path: Path):
    with SinkServer() as server:
        config = {
            "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": "admin-token-1"},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": [{"name": "crm", "type": "generic_webhook", "url": server.url, "secret": SECRET,
                       "events": ["ticket.created"], "retry_schedule": [0.2]}],
        }
        path = write_config(tmp_path / "gateway.toml", config)
        worker = start_worker(path, tmp_path / "worker.log", plain=False)
        try:
            yield path, server, worker
        finally:
            worker.stop()


def gateway(path: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)
    return result


def test_a_received_ticket_is_delivered_signed_and_the_cli_shows_it(setup):
    path, server, worker = setup
    app = create_app(Runtime.from_config(path))
    app.testing = True
    server.answer(Answer(503, b"down for a moment"))
    created = app.test_client().post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": "Test Ticket", "message": "This is a test", "customer_email": "test@example.com"}})
    assert created.status_code == 201

    wait_until(lambda: server.count() == 2, what=f"two attempts; worker log:\n{worker.output()}")
    received = server.received[-1]
    assert received.headers["X-Webhook-Signature"] == hex_signature(received.body, SECRET)
    assert received.json["data"]["ticket"]["subject"] == "Test Ticket"
    delivery_id = received.headers["X-Webhook-Delivery"]

    listed = wait_until(lambda: (rows := json.loads(gateway(path, "deliveries", "--json").output))
                        and rows[0]["status"] == "delivered" and rows, what="delivered in the log")
    assert [row["id"] for row in listed] == [delivery_id]
    table = gateway(path, "deliveries", "--sink", "crm").output
    assert delivery_id in table and "delivered" in table

    shown = gateway(path, "delivery", "show", delivery_id)
    assert shown.exit_code == 0
    assert "503" in shown.output and "200" in shown.output and "down for a moment" in shown.output
    assert SECRET not in shown.output and received.headers["X-Webhook-Signature"] not in shown.output

    [sink] = json.loads(gateway(path, "sinks", "--json").output)
    assert sink["state"] == "ok" and sink["counts"]["last_24h"] == {"delivered": 1, "retrying": 1, "failed": 0}

    replayed = gateway(path, "replay", delivery_id)
    assert replayed.exit_code == 0 and "queued" in replayed.output
    wait_until(lambda: server.count() == 3, what="the replay")
    assert server.received[-1].headers["X-Webhook-Delivery"] == delivery_id


def test_send_test_resume_and_errors(setup):
    path, server, _ = setup
    sent = gateway(path, "send-test", "ticket.resolved", "--sink", "crm", "--json")
    assert sent.exit_code == 0
    [delivery_id] = json.loads(sent.output)["delivery_ids"]
    wait_until(lambda: server.count() == 1, what="the test event")
    assert server.received[0].json["event"] == "ticket.resolved"
    assert server.received[0].headers["X-Webhook-Delivery"] == delivery_id

    paused = gateway(path, "sinks", "pause", "crm", "--reason", "CRM maintenance")
    assert paused.exit_code == 0 and paused.output.startswith("Sink crm paused: CRM maintenance;")
    shown = json.loads(gateway(path, "sinks", "--json").output)
    assert [(s["state"], s["paused_reason"]) for s in shown if s["name"] == "crm"] == [("paused", "CRM maintenance")]
    resumed = gateway(path, "sinks", "resume", "crm")
    assert resumed.exit_code == 0 and "resumed" in resumed.output
    assert gateway(path, "sinks", "pause", "nope").exit_code == 2

    unknown_sink = gateway(path, "send-test", "ticket.created", "--sink", "nope")
    assert unknown_sink.exit_code == 2 and "No sink named 'nope'" in unknown_sink.output
    unknown_event = gateway(path, "send-test", "ticket.exploded", "--sink", "crm")
    assert unknown_event.exit_code == 2 and "Unknown event" in unknown_event.output
    missing = gateway(path, "delivery", "show", "dlv_nope")
    assert missing.exit_code == 1 and "No delivery" in missing.output
    both = gateway(path, "replay", "dlv_x", "--sink", "crm")
    assert both.exit_code == 2
    bulk = gateway(path, "replay", "--sink", "crm", "--status", "failed", "--since", "1h", "--json")
    assert bulk.exit_code == 0 and json.loads(bulk.output) == {"matched": 0, "queued": 0}
