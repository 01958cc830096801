"""The generic webhook sink (``generic_webhook``): its options, what it renders, how it
judges answers, and what a receiver gets over a real connection, checked with the guide's
own Python and Node.js verifiers and the ``standardwebhooks`` library.

Like every bundled plugin's tests, these use only the gateway's public API (``gateway``) and
its test helpers (``gateway.testing``): what a third party's plugin has too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway import ConfigError, DeliveryInfo, Event, OutcomeKind, Response, SinkContext, Target
from gateway.testing import RecordingSink, check_config, send_request
from gateway_generic_webhook import GenericWebhookSink

NODE_VERIFIER = Path(__file__).parent / "js" / "verify_guide.js"
SECRET = "s3cr3t-from-settings"
ADMIN = "generic-webhook-admin-token-0123456789"  # as conftest's gateway fixture
TICKET = {"ticket": {"id": "5b0c5c1e-1f0e-4a53-9a43-0d1c1b2f9a11", "ticket_number": "TKT-2026-001",
                     "subject": "Café crème machine broken ☕", "status": "new",
                     "customer_email": "zoë@example.com"}}


# ---- the guide's Python verifier, verbatim ("Verifying Signatures", Python) ----
def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload.encode(),
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)
# ---- end of the guide's code ----


def node_verifies(body: bytes, signature: str, secret: str) -> bool:
    """Run the guide's Node.js verifySignature (js/verify_guide.js, next to this file) with ``node``."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, str(NODE_VERIFIER)], capture_output=True, text=True, timeout=60, check=False,
                            input=json.dumps({"body_base64": base64.b64encode(body).decode(),
                                              "signature": signature, "secret": secret}))
    assert result.stdout.strip() in ("valid", "invalid"), result.stderr
    return result.returncode == 0


def sink_table(**options: Any) -> dict[str, Any]:
    return {"name": "crm", "type": "generic_webhook", "events": ["*"], "url": "https://crm.example.com/hooks",
            **options}


def load_sink_options(**options: Any) -> dict[str, Any]:
    """The sink's options as the core loads them from a ``[[sinks]]`` table."""
    return dict(check_config({"sinks": [sink_table(**options)]}).sinks[0].options)


def make_sink(**options: Any) -> GenericWebhookSink:
    return GenericWebhookSink("crm", load_sink_options(**options), SinkContext(None, "gw:", None))  # type: ignore[arg-type]


EVENT = Event.new("ticket.created", TICKET)
DELIVERY = DeliveryInfo(id="dlv_0f7c2a9e", attempt=1, sink="crm")


# ---- options ----

def test_the_plugin_is_discovered_through_its_entry_point(make_client) -> None:
    client = make_client({"gateway": {"admin_token": ADMIN}})
    response = client.get("/api/plugins", headers={"Authorization": f"Bearer {ADMIN}"})
    plugins = {plugin["name"]: plugin for plugin in response.get_json()["plugins"]}
    assert plugins["generic_webhook"]["sink_types"] == ["generic_webhook"]
    assert plugins["generic_webhook"]["error"] is None


def test_defaults() -> None:
    options = load_sink_options()
    assert options["user_agent"] == "AI-Support-Autoresponder/1.0"
    assert options["headers"] == {}


def config_errors(**options: Any) -> dict[str, list[str]]:
    with pytest.raises(ConfigError) as caught:
        check_config({"sinks": [sink_table(**options)]})
    return dict(caught.value.errors)


def test_url_is_required_and_must_be_http() -> None:
    table = sink_table()
    del table["url"]
    with pytest.raises(ConfigError) as caught:
        check_config({"sinks": [table]})
    assert "sinks[0].url" in caught.value.errors
    assert "sinks[0].url" in config_errors(url="ftp://crm.example.com/hooks")


@pytest.mark.parametrize("name", ["X-Webhook-Signature", "x-webhook-delivery", "Webhook-Signature", "webhook-id",
                                  "X-Webhook-Event", "Content-Type", "User-Agent", "Host"])
def test_static_headers_cannot_replace_the_webhook_headers(name: str) -> None:
    errors = config_errors(headers={name: "forged"})
    assert any(name in message and "cannot be set here" for message in errors["sinks[0].headers"])


@pytest.mark.parametrize("headers", [{"X-Tenant": "acme\r\nX-Evil: 1"}, {"Bad Name": "x"}, {"X-Ok": "x\ny"}])
def test_static_headers_must_be_valid_http(headers: dict[str, str]) -> None:
    assert any(path.startswith("sinks[0].headers") for path in config_errors(headers=headers))


def test_unknown_options_are_refused() -> None:
    assert "sinks[0].uri" in config_errors(uri="https://typo.example.com/")


# ---- render ----

def test_render_is_the_guides_envelope_and_headers() -> None:
    sink = make_sink(headers={"X-Tenant": "acme"}, user_agent="Acme-Gateway/2.0")
    request = sink.render(EVENT, Target("default", "https://crm.example.com/hooks"), DELIVERY)
    assert request.method == "POST"
    assert request.url == "https://crm.example.com/hooks"
    assert request.sign is True
    assert request.body == EVENT.envelope_bytes()
    envelope = json.loads(request.body)
    assert list(envelope) == ["event", "timestamp", "data"]
    assert envelope["event"] == "ticket.created"
    assert envelope["data"] == TICKET
    assert datetime.strptime(envelope["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert request.headers == {"X-Tenant": "acme", "Content-Type": "application/json",
                               "User-Agent": "Acme-Gateway/2.0", "X-Webhook-Event": "ticket.created",
                               "X-Webhook-Delivery": "dlv_0f7c2a9e"}


def test_the_delivery_id_is_the_same_on_every_attempt() -> None:
    sink = make_sink()
    target = Target("default", "https://crm.example.com/hooks")
    ids = {sink.render(EVENT, target, DeliveryInfo("dlv_same", attempt, "crm")).headers["X-Webhook-Delivery"]
           for attempt in (1, 2, 7)}
    assert ids == {"dlv_same"}


# ---- what a receiver gets, over a real connection ----

def deliver(secrets: list[str]) -> tuple[bytes, dict[str, str]]:
    """Render, sign as the core does, send with the real client; what the server received."""
    with RecordingSink() as server:
        request = make_sink().render(EVENT, Target("default", server.url), DELIVERY)
        assert send_request(request, DELIVERY, secrets).status_code == 200
        [received] = server.requests
    return received.body, received.headers


def whsec(secret: str) -> str:
    """A plain secret in the form Standard Webhooks libraries take: ``whsec_`` and the
    base64 of its UTF-8 bytes (the spec's, not the gateway's code)."""
    return "whsec_" + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def standard_verify(secret: str, body: bytes, headers: dict[str, str]) -> Any:
    return Webhook(whsec(secret)).verify(body, headers)


def test_the_guides_verifiers_and_standard_webhooks_accept_a_delivery() -> None:
    body, headers = deliver([SECRET])
    assert body == EVENT.envelope_bytes()
    assert headers["User-Agent"] == "AI-Support-Autoresponder/1.0"
    assert headers["X-Webhook-Event"] == "ticket.created"
    signature = headers["X-Webhook-Signature"]
    assert verify_signature(body.decode("utf-8"), signature, SECRET)
    assert node_verifies(body, signature, SECRET)
    assert standard_verify(SECRET, body, headers) == json.loads(body)
    assert headers["webhook-id"] == headers["X-Webhook-Delivery"] == DELIVERY.id


def test_the_verifiers_refuse_a_wrong_secret_or_a_changed_body() -> None:
    body, headers = deliver([SECRET])
    signature = headers["X-Webhook-Signature"]
    assert not verify_signature(body.decode("utf-8"), signature, "not-the-secret")
    assert not node_verifies(body, signature, "not-the-secret")
    tampered = body.replace(b"TKT-2026-001", b"TKT-2026-002")
    assert not verify_signature(tampered.decode("utf-8"), signature, SECRET)
    assert not node_verifies(tampered, signature, SECRET)
    with pytest.raises(WebhookVerificationError):
        standard_verify(SECRET, tampered, headers)


def test_rotation_signs_with_both_secrets() -> None:
    new, old = "the-new-secret", "the-old-secret"
    body, headers = deliver([new, old])
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(entry.startswith("v1,") for entry in entries)
    # Receivers still on the old secret keep verifying (Standard Webhooks) ...
    assert standard_verify(old, body, headers) == json.loads(body)
    assert standard_verify(new, body, headers) == json.loads(body)
    # ... while X-Webhook-Signature, one value only, is already the new secret's.
    assert verify_signature(body.decode("utf-8"), headers["X-Webhook-Signature"], new)
    assert not verify_signature(body.decode("utf-8"), headers["X-Webhook-Signature"], old)


def test_a_whsec_secret_verifies_as_given() -> None:
    secret = whsec("raw-bytes-secret")
    body, headers = deliver([secret])
    assert Webhook(secret).verify(body, headers) == json.loads(body)
    assert verify_signature(body.decode("utf-8"), headers["X-Webhook-Signature"], secret)


def test_unsigned_without_a_secret() -> None:
    _, headers = deliver([])
    lowered = {name.lower() for name in headers}
    assert not lowered & {"x-webhook-signature", "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["X-Webhook-Delivery"] == DELIVERY.id


# ---- classify ----

def classify(status: int, headers: dict[str, str] | None = None) -> Any:
    return make_sink().classify(Response(status, headers or {}, b""), Target("default", "https://x.example/"))


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert classify(status).kind is OutcomeKind.DELIVERED


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_given_up_not_followed(status: int) -> None:
    outcome = classify(status, {"Location": "https://elsewhere.example/"})
    assert outcome.kind is OutcomeKind.GIVE_UP
    assert "redirect not followed" in outcome.reason
    assert "elsewhere" not in outcome.reason


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 413, 422])
def test_answers_that_would_repeat_are_given_up(status: int) -> None:
    outcome = classify(status)
    assert outcome.kind is OutcomeKind.GIVE_UP and outcome.reason == f"HTTP {status}"
    assert outcome.pause_sink is False


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_answers_that_time_may_fix_are_retried(status: int) -> None:
    outcome = classify(status, {"Retry-After": "7"})
    assert outcome.kind is OutcomeKind.RETRY
    assert outcome.reason == f"HTTP {status}"
    # Retry-After is honoured by the core for every retried answer (tests/delivery/test_retry.py).
    assert outcome.not_before is None


def test_410_is_gone_and_pauses_the_sink() -> None:
    outcome = classify(410)
    assert outcome.kind is OutcomeKind.GONE
    assert "410" in outcome.reason
    assert make_sink().on_gone(Target("default", "https://x.example/"), outcome.reason) is True


# ---- end to end: a ticket through the gateway and a real worker process ----

def test_a_ticket_arrives_verified_and_a_replay_keeps_the_delivery_id(gateway, recording_sink) -> None:
    client, burst = gateway(recording_sink.url, secret=SECRET)
    created = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": "Café crème machine broken ☕", "message": "It leaks.", "customer_email": "zoe@example.com"}})
    assert created.status_code == 201, created.get_json()
    burst()
    [first] = recording_sink.requests
    assert first.json()["event"] == "ticket.created"
    assert first.json()["data"]["ticket"]["subject"] == "Café crème machine broken ☕"
    assert verify_signature(first.body.decode("utf-8"), first.headers["X-Webhook-Signature"], SECRET)
    assert node_verifies(first.body, first.headers["X-Webhook-Signature"], SECRET)
    standard_verify(SECRET, first.body, first.headers)

    delivery_id = first.headers["X-Webhook-Delivery"]
    auth = {"Authorization": f"Bearer {ADMIN}"}
    replay = client.post(f"/api/deliveries/{delivery_id}/replay", headers=auth)
    assert replay.status_code in (200, 202), replay.get_json()
    burst()
    [_, second] = recording_sink.requests
    assert second.headers["X-Webhook-Delivery"] == second.headers["webhook-id"] == delivery_id
    assert second.body == first.body
    standard_verify(SECRET, second.body, second.headers)
    shown = client.get(f"/api/deliveries/{delivery_id}", headers=auth)
    assert SECRET not in shown.get_data(as_text=True)


def test_the_sinks_api_shows_static_header_names_not_values(make_client) -> None:
    client = make_client({"gateway": {"admin_token": ADMIN}, "sinks": [sink_table(
        secret=SECRET, headers={"Authorization": "Bearer tok-123", "X-Auth-Key": "key-456", "X-Tenant": "acme"})]})
    response = client.get("/api/sinks", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200
    [sink] = response.get_json()["sinks"]
    assert sink["options"]["headers"] == {"Authorization": "[hidden]", "X-Auth-Key": "[hidden]",
                                          "X-Tenant": "[hidden]"}
    shown = response.get_data(as_text=True)
    for secret in (SECRET, "tok-123", "key-456"):
        assert secret not in shown
