"""Structured logs: one JSON line per request and per delivery attempt; no secrets, ever."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from marshmallow import Schema, fields
from support.processes import free_port

from gateway import OutgoingRequest, Sink, SinkType, hookimpl, logs
from gateway.testing import Reply

SECRET = "incoming-secret-0b7e"
SINK_SECRET = "sink-secret-5c2d9a"
TICKET = {"event": "ticket.create", "data": {"subject": "Confidential subject line",
                                             "message": "Body text that must not be logged",
                                             "customer_email": "jane@example.com"}}


class UrlOptions(Schema):
    url = fields.String(required=True)


class SignedSink(Sink):
    def render(self, event, target, delivery):
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                               headers={"Content-Type": "application/json"})


class SignedSinkPlugin:
    __name__ = "signed_sink_plugin"

    @hookimpl
    def register_sink_types(self, register):
        register(SinkType(name="signed", options_schema=UrlOptions, factory=SignedSink))


@pytest.fixture
def log_output():
    """Logs as JSON into a buffer; returns a function giving the parsed lines so far."""
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logs.reset()


@pytest.fixture
def gateway_plugins():
    return [SignedSinkPlugin()]


@pytest.fixture
def gateway_config(recording_sink):
    return {"gateway": {"secret": SECRET, "admin_token": "admin-token-77aa31-0123456789abc"},
            "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("crm", type="signed", events=["ticket.created"],
                                          secret=SINK_SECRET)]}


def signed_post(client, body: dict, secret: str = SECRET):
    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    response = client.post("/api/webhooks/receive", data=raw, headers={
        "Content-Type": "application/json", "X-Webhook-Signature": signature})
    return response, signature


def test_one_json_line_per_request_without_bodies_or_signatures(client, log_output):
    created, signature = signed_post(client, TICKET)
    refused, bad_signature = signed_post(client, TICKET, secret="not-the-secret")
    assert created.status_code == 201 and refused.status_code == 401

    lines = log_output()
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/api/webhooks/receive", 201), ("POST", "/api/webhooks/receive", 401)]
    for line in access:
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert line["remote_addr"] == "127.0.0.1"
        assert line["level"] == "info" and line["ts"].endswith("Z")
    text = json.dumps(lines)
    for secret in (SECRET, signature, bad_signature, "Confidential subject line", "must not be logged"):
        assert secret not in text


def test_one_json_line_per_delivery_attempt(app, client, recording_sink, drain_deliveries, log_output):
    recording_sink.reply(500)
    created, _ = signed_post(client, TICKET)
    assert created.status_code == 201

    first = drain_deliveries(app)

    assert [a["outcome"] for a in first] == ["retry"]
    lines = [line for line in log_output() if line["logger"] == "gateway.attempts"]
    assert len(lines) == 1
    line = lines[0]
    assert line["delivery_id"] == first[0]["delivery_id"] and line["delivery_id"].startswith("dlv_")
    assert (line["event"], line["sink"], line["status_code"], line["outcome"]) == (
        "ticket.created", "crm", 500, "retry")
    assert line["status"] == "retrying" and line["attempt"] == 1 and line["next_attempt_at"]
    assert isinstance(line["duration_ms"], (int, float))
    # The request really was signed; its signature is in no log line.
    sent = recording_sink.wait_for(1)[0]
    signature = sent.header("X-Webhook-Signature")
    assert signature and signature not in json.dumps(log_output())
    assert SINK_SECRET not in json.dumps(log_output())


def test_failed_attempt_is_a_warning(app, client, recording_sink, drain_deliveries, log_output):
    recording_sink.reply(Reply(410, body="gone"))
    signed_post(client, TICKET)

    drain_deliveries(app)

    line = next(line for line in log_output() if line["logger"] == "gateway.attempts")
    assert (line["outcome"], line["status"], line["level"]) == ("gone", "failed", "warning")
    assert line["error"] == "gone"


HEX = "5d41402abc4b2a76b9719d911017c592aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d"


@pytest.mark.parametrize(("leak", "secret"), [
    (f"signature={HEX}", HEX[:16]),
    (f"X-Webhook-Signature: {HEX}", HEX[:16]),
    (f"plain hex {HEX} in a message", HEX[:16]),
    ("X-Webhook-Signature: sha256=5d41402abc4b2a76b9719d911017c592", "5d41402abc4b2a76"),
    ("webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", "K5oZfzN95Z9U"),
    ("secret is whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqr"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
    ("redis://user:hunter2hunter2@redis.internal:6379/0", "hunter2hunter2"),
    ("api_key='k-12345678'", "k-12345678"),
    ('{"token": "tok_live_abcdef"}', "tok_live_abcdef"),
])
def test_the_safety_net_redacts_secret_looking_values(log_output, leak, secret):
    logging.getLogger("some.plugin").warning("careless plugin says: %s", leak)

    (line,) = log_output()

    assert "[redacted]" in line["message"]
    assert secret not in line["message"]


def test_configured_secrets_are_redacted_anywhere(app, log_output):
    log = logging.getLogger("some.plugin")

    log.info("the sink secret is %s", SINK_SECRET)
    log.info("tokens", extra={"note": f"admin {app.extensions['gateway'].settings.admin_token}"})
    try:
        raise ValueError(f"could not use {SECRET}")
    except ValueError:
        log.exception("failed")

    text = json.dumps(log_output())
    for secret in (SECRET, SINK_SECRET, "admin-token-77aa31-0123456789abc"):
        assert secret not in text
    assert text.count("[redacted]") >= 3


def test_an_attempts_error_text_is_redacted_in_its_line(app, log_output):
    # The attempt line skips the filter's full pass; its free text must still be redacted.
    attempt = {"delivery_id": "dlv_1", "event": "ticket.created", "event_id": "evt_1", "sink": "crm",
               "attempt": 1, "status_code": None, "duration_ms": 3.0, "outcome": "retry", "status": "retrying",
               "error": {"code": "connect_failed",
                         "message": f"refused: redis://user:hunter2hunter2@db:6379/0 key {SINK_SECRET}"}}
    logs.log_attempt(attempt)
    (line,) = [line for line in log_output() if line["logger"] == "gateway.attempts"]
    assert line["error"] == "connect_failed" and "refused" in line["message"]
    for secret in ("hunter2hunter2", SINK_SECRET):
        assert secret not in json.dumps(line)


def test_cli_log_format_json_for_the_web_server(tmp_path: Path, redis_url: str, redis_client):
    conf = tmp_path / "gateway.toml"
    conf.write_text(f'[gateway]\nredis_url = "{redis_url}"\ndata_dir = "{tmp_path / "data"}"\n'
                    f'secret = "{SECRET}"\nadmin_token = "admin-token-77aa31-0123456789abc"\n')
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PROMETHEUS_"))}
    gateway = Path(sys.executable).with_name("gateway")
    proc = subprocess.Popen([str(gateway), "--log-format", "json", "--config", str(conf), "web", "--port",
                             str(port), "--web-workers", "1"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/api/webhooks/receive", json=TICKET,
                                         headers={"X-Webhook-Signature": "ab" * 32}, timeout=60)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert proc.poll() is None and time.monotonic() < deadline, "gateway web did not start"
                time.sleep(0.1)
        assert response.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    # Every line is JSON, gunicorn's own included.
    ours = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["logger"] == "gunicorn.error" for line in ours)
    access = [line for line in ours if line["logger"] == "gateway.access"]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [("POST", "/api/webhooks/receive", 401)]
    assert "ab" * 32 not in stderr and SECRET not in stderr


FORGED = "2026-01-01 00:00:00,000 WARNING gateway.auth: admin sign-in from 10.0.0.1"


def test_a_path_with_a_newline_cannot_forge_a_text_log_line(client):
    # Issue 13: "%0A" in a request path started a line of the attacker's choosing.
    stream = io.StringIO()
    logs.configure("text", "INFO", stream=stream)
    try:
        response = client.get("/nope%0D%0A" + FORGED.replace(" ", "%20") + "%1B[31m%7F")
    finally:
        logs.reset()
    assert response.status_code == 404
    lines = stream.getvalue().splitlines()
    access = [line for line in lines if " gateway.access: " in line]
    assert len(access) == 1 and not any(line.startswith(FORGED) for line in lines)
    assert "/nope\\r\\n" + FORGED + "\\x1b[31m\\x7f 404 " in access[0]


def test_json_lines_keep_a_newline_in_a_path_inside_one_line(client, log_output):
    assert client.get("/nope%0A" + FORGED.replace(" ", "%20")).status_code == 404
    access = [line for line in log_output() if line["logger"] == "gateway.access"]
    assert [line["path"] for line in access] == ["/nope\n" + FORGED]


DELIVERED = {"delivery_id": "dlv_2", "event_id": "evt_1", "event": "ticket.created", "sink": "crm", "target": None,
             "attempt": 2, "at": "2026-01-01T00:00:00.000Z", "duration_ms": 4.5, "status_code": 200,
             "outcome": "delivered", "status": "delivered", "error": None, "response_excerpt": "",
             "request": {"method": "POST"}, "next_attempt_at": None, "event_timestamp": "2026-01-01T00:00:00Z",
             "waited_for": {"delivery_id": "dlv_1", "status": "failed"}}
FAILED = {**DELIVERED, "delivery_id": "dlv_3", "status_code": None, "outcome": "exhausted", "status": "failed",
          "error": {"code": "connect_failed", "message": "refused (no retries left)"}}
del FAILED["waited_for"]


class Keeper(logging.Handler):
    """An operator's own handler: keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_attempts_text_line_reads_the_same_whatever_the_attempt(capsys):
    logs.configure("text", "INFO")  # to stderr, as `gateway worker` writes
    try:
        logs.log_attempt(DELIVERED)
        logs.log_attempt(FAILED)
    finally:
        logs.reset()
    lines = capsys.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert len(lines) == 2
    assert re.fullmatch(stamp + " INFO gateway.attempts: delivery dlv_2 of ticket.created to crm: delivered 200 "
                        r"in 4\.5ms after dlv_1 \(failed\)", lines[0]), lines[0]
    assert re.fullmatch(stamp + " WARNING gateway.attempts: delivery dlv_3 of ticket.created to crm: exhausted - "
                        r"in 4\.5ms \(refused \(no retries left\)\)", lines[1]), lines[1]


def test_an_attempts_json_line_has_its_fields_in_order(log_output):
    logs.log_attempt(DELIVERED)
    logs.log_attempt(FAILED)
    delivered, failed = log_output()
    assert list(delivered) == ["ts", "level", "logger", "pid", "message", "delivery_id", "event", "event_id", "sink",
                               "attempt", "status_code", "duration_ms", "outcome", "status", "error",
                               "next_attempt_at", "waited_for"]
    assert delivered["pid"] == os.getpid()
    assert {k: v for k, v in delivered.items() if k not in ("ts", "pid")} == {
        "level": "info", "logger": "gateway.attempts",
        "message": "delivery dlv_2 of ticket.created to crm: delivered 200 in 4.5ms after dlv_1 (failed)",
        "delivery_id": "dlv_2", "event": "ticket.created", "event_id": "evt_1", "sink": "crm", "attempt": 2,
        "status_code": 200, "duration_ms": 4.5, "outcome": "delivered", "status": "delivered", "error": None,
        "next_attempt_at": None, "waited_for": "dlv_1"}
    assert (failed["level"], failed["error"], failed["waited_for"], failed["status_code"]) == (
        "warning", "connect_failed", None, None)


def test_an_operators_handler_gets_each_attempt_as_a_record_at_its_level():
    keeper = Keeper()
    attempts = logging.getLogger("gateway.attempts")
    attempts.addHandler(keeper)
    attempts.setLevel(logging.WARNING)  # an operator who wants failures only
    try:
        logs.log_attempt(DELIVERED)
        logs.log_attempt(FAILED)
    finally:
        attempts.removeHandler(keeper)
        attempts.setLevel(logging.NOTSET)
    (record,) = keeper.records
    assert (record.levelno, record.name, record.msg) == (
        logging.WARNING, "gateway.attempts", "delivery %s of %s to %s: %s %s in %sms%s")
    assert record.args == ("dlv_3", "ticket.created", "crm", "exhausted", "-", 4.5, " (refused (no retries left))")
    assert (record.delivery_id, record.error, record.attempt, record.waited_for) == (
        "dlv_3", "connect_failed", 2, None)
    assert (record.process, record.thread, record.module) == (os.getpid(), threading.get_ident(), "logs")
