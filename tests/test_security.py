"""Security, as tests (issue 7, item 6): what an attacker or a careless operator could try.

Real parts only: the test Redis, the Flask app, the real delivery engine (in process, and a
real worker process where its output matters), real local HTTP servers as sinks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from support.configs import write_config
from support.processes import child_env, wait_until
from support.servers import served_gateway

from gateway import signing
from gateway.testing import Reply

RECEIVE = "/api/webhooks/receive"
INCOMING_SECRET = "incoming-S3CRET-7f3a91"
ADMIN_TOKEN = "admin-T0KEN-5c2e88-0123456789abc"
SINK_SECRET = "sink-S3CRET-new-41d0"
OLD_SINK_SECRET = "sink-S3CRET-old-9b77"
URL_PASSWORD = "url-PASSW0RD-0e1f"
SLACK_PATH_SECRET = "SLACKPATHS3CRET8842"
ZAPIER_KEY = "zapier-API-KEY-13579"
DEADLINE_S = 90.0  # generous: CI runs three test workers on two cores; a pass returns at once


def ticket_body(subject: str = "Printer on fire", **data: Any) -> bytes:
    return json.dumps(
        {
            "event": "ticket.create",
            "data": {
                "subject": subject,
                "message": "It smokes.",
                "customer_email": "ann@example.com",
                **data,
            },
        }
    ).encode()


def signed_headers(body: bytes, secret: str = INCOMING_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Webhook-Signature": signing.hex_signature(body, secret)}


def ticket_count(redis: redis_lib.Redis) -> int:
    return int(redis.zcard("gw:tickets"))


# -- signatures ----------------------------------------------------------------------------------


def _wrong_signatures(body: bytes) -> list[tuple[str, dict[str, str]]]:
    right = signing.hex_signature(body, INCOMING_SECRET)
    now = int(time.time())
    std_wrong = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signing.standard_signature("msg_1", now, body, ["another-secret"]),
    }
    std_old = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now - 3600),
        "webhook-signature": signing.standard_signature("msg_2", now - 3600, body, [INCOMING_SECRET]),
    }
    return [
        ("no signature at all", {}),
        ("empty X-Webhook-Signature", {"X-Webhook-Signature": ""}),
        (
            "signed with another secret",
            {"X-Webhook-Signature": signing.hex_signature(body, "another-secret")},
        ),
        (
            "signature of another body",
            {"X-Webhook-Signature": signing.hex_signature(body + b" ", INCOMING_SECRET)},
        ),
        ("truncated signature", {"X-Webhook-Signature": right[:32]}),
        ("sha256= prefix, wrong value", {"X-Webhook-Signature": "sha256=" + "0" * 64}),
        (
            "SHA-1 instead of SHA-256",
            {"X-Webhook-Signature": hmac.new(INCOMING_SECRET.encode(), body, hashlib.sha1).hexdigest()},
        ),
        ("the secret itself as the signature", {"X-Webhook-Signature": INCOMING_SECRET}),
        ("Standard Webhooks, wrong secret", std_wrong),
        ("Standard Webhooks, an hour old", std_old),
        (
            "Standard Webhooks, signature without id",
            {k: v for k, v in std_wrong.items() if k != "webhook-id"},
        ),
    ]


def test_signature_is_required_whenever_a_secret_is_set(
    make_client: Any, redis_client: redis_lib.Redis
) -> None:
    client = make_client({"gateway": {"secret": INCOMING_SECRET}})
    body = ticket_body()
    for label, headers in _wrong_signatures(body):
        response = client.post(RECEIVE, data=body, headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 401, label
        error = response.get_json()
        assert error["error"] in ("signature_missing", "signature_invalid", "timestamp_out_of_tolerance"), (
            label
        )
        # The refusal says what to do, but never echoes the secret or what was sent.
        text = response.get_data(as_text=True)
        assert INCOMING_SECRET not in text, label
        for value in headers.values():
            if len(value) >= 16:
                assert value not in text, label
    assert ticket_count(redis_client) == 0
    # The same body, correctly signed, is accepted: the refusals above were about the signature.
    assert client.post(RECEIVE, data=body, headers=signed_headers(body)).status_code == 201
    assert ticket_count(redis_client) == 1


def test_without_a_secret_unsigned_requests_are_accepted_with_a_warning(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        client = make_client()
    assert "gateway.secret is not set" in caplog.text
    assert (
        client.post(RECEIVE, data=ticket_body(), headers={"Content-Type": "application/json"}).status_code
        == 201
    )


# -- constant-time comparison --------------------------------------------------------------------


class CompareSpy:
    """Stands in for hmac.compare_digest: records each call and answers ``verdict`` (or the
    real comparison when ``verdict`` is None). Forcing the answer proves the decision is the
    one compare_digest makes, not an ``==`` somewhere beside it."""

    real = staticmethod(hmac.compare_digest)

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.verdict: bool | None = None

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self.real(a, b) if self.verdict is None else self.verdict


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return spy


def test_hex_signature_is_decided_by_compare_digest_without_early_exit(compare_spy: CompareSpy) -> None:
    body = ticket_body()
    right = signing.hex_signature(body, INCOMING_SECRET)
    assert signing.verify_hex_signature(body, right, [INCOMING_SECRET])
    assert compare_spy.calls == [(right.encode(), right.encode())]
    compare_spy.calls.clear()
    # Two secrets (rotation), the first matching: both are still compared, so the time
    # taken does not tell which secret matched.
    assert signing.verify_hex_signature(body, right, [INCOMING_SECRET, "old-secret"])
    assert len(compare_spy.calls) == 2
    compare_spy.verdict = False
    assert not signing.verify_hex_signature(body, right, [INCOMING_SECRET])
    compare_spy.verdict = True
    assert signing.verify_hex_signature(body, "0" * 64, [INCOMING_SECRET])


def test_standard_signature_is_decided_by_compare_digest(compare_spy: CompareSpy) -> None:
    body = ticket_body()
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": signing.standard_signature("msg_1", now, body, [INCOMING_SECRET]),
    }
    signing.verify_standard(body, headers, [INCOMING_SECRET], 300)
    assert len(compare_spy.calls) == 1
    compare_spy.verdict = False
    with pytest.raises(signing.StandardVerifyError):
        signing.verify_standard(body, headers, [INCOMING_SECRET], 300)


def test_receive_endpoint_and_admin_token_use_compare_digest(
    make_client: Any, compare_spy: CompareSpy
) -> None:
    client = make_client({"gateway": {"secret": INCOMING_SECRET, "admin_token": ADMIN_TOKEN}})
    body = ticket_body()
    compare_spy.verdict = False  # a correct signature, judged wrong by compare_digest alone
    assert client.post(RECEIVE, data=body, headers=signed_headers(body)).status_code == 401
    assert compare_spy.calls
    compare_spy.calls.clear()
    assert client.get("/api/tickets", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 403
    assert (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()) in compare_spy.calls
    compare_spy.verdict = True  # a wrong token, judged right by compare_digest alone
    assert client.get("/api/tickets", headers={"Authorization": "Bearer wrong-token"}).status_code == 200


def test_zapier_api_key_uses_compare_digest(make_client: Any, compare_spy: CompareSpy) -> None:
    client = make_client(
        {
            "gateway": {"admin_token": ADMIN_TOKEN},
            "sinks": [{"name": "zap", "type": "zapier", "events": ["*"], "api_keys": [ZAPIER_KEY]}],
        }
    )
    compare_spy.verdict = False
    assert client.get("/api/zapier/hooks", headers={"X-API-Key": ZAPIER_KEY}).status_code == 401
    assert compare_spy.calls
    compare_spy.verdict = None
    assert client.get("/api/zapier/hooks", headers={"X-API-Key": ZAPIER_KEY}).status_code == 200


# -- size limits ---------------------------------------------------------------------------------


def test_body_limit_applies_before_anything_else(make_client: Any, redis_client: redis_lib.Redis) -> None:
    client = make_client({"gateway": {"secret": INCOMING_SECRET, "max_body_bytes": 4096}})
    body = ticket_body(message="x" * 5000)
    response = client.post(RECEIVE, data=body, headers=signed_headers(body))
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert "4096" in response.get_json()["message"]
    assert ticket_count(redis_client) == 0


def test_body_limit_holds_for_a_chunked_body_on_a_real_server(
    tmp_path: Path, redis_url: str, redis_client: redis_lib.Redis
) -> None:
    """No Content-Length to check up front: the limit must stop the read itself."""
    body = ticket_body(message="x" * 200_000)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    with served_gateway(tmp_path, redis_url, {"gateway": {"max_body_bytes": 4096}}, web_workers=1) as web:
        try:
            response = requests.post(
                web.url + RECEIVE, data=chunks(), timeout=30, headers={"Content-Type": "application/json"}
            )
        except requests.ConnectionError:
            response = None  # the server may close the connection before reading it all: fine
    if response is not None:
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "payload_too_large"
    assert ticket_count(redis_client) == 0


@pytest.mark.parametrize(
    ("field", "length"),
    [
        ("subject", 10_000),
        ("subject", 201),
        ("message", 20_001),
        ("customer_name", 201),
        ("category", 101),
    ],
)
def test_field_lengths_are_limited(
    make_client: Any, redis_client: redis_lib.Redis, field: str, length: int
) -> None:
    client = make_client()
    data = {"subject": "s", "message": "m", "customer_email": "ann@example.com", field: "x" * length}
    response = client.post(RECEIVE, json={"event": "ticket.create", "data": data})
    assert response.status_code == 422
    error = response.get_json()
    assert error["error"] == "validation_failed"
    assert list(error["fields"]) == [f"data.{field}"]
    assert ticket_count(redis_client) == 0
    # One character less than the limit is fine, so the limit is where the guide's fields end.
    data[field] = "x" * min(length - 1, {"subject": 200, "message": 20_000}.get(field, length - 1))
    assert client.post(RECEIVE, json={"event": "ticket.create", "data": data}).status_code == 201


def test_overlong_email_and_idempotency_key_are_refused(
    make_client: Any, redis_client: redis_lib.Redis
) -> None:
    client = make_client()
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".example.com"
    response = client.post(
        RECEIVE,
        json={"event": "ticket.create", "data": {"subject": "s", "message": "m", "customer_email": email}},
    )
    assert response.status_code == 422 and "data.customer_email" in response.get_json()["fields"]
    response = client.post(
        RECEIVE,
        data=ticket_body(),
        headers={"Content-Type": "application/json", "Idempotency-Key": "k" * 256},
    )
    assert response.status_code == 400 and response.get_json()["error"] == "idempotency_key_invalid"
    assert ticket_count(redis_client) == 0


# -- admin endpoints -----------------------------------------------------------------------------

# Endpoints meant to be reachable without the admin token, and why.
PUBLIC = {
    "/api/webhooks/receive": "the intake; protected by the webhook signature",
    "/healthz": "liveness probe",
    "/readyz": "readiness probe",
    "/metrics": "Prometheus scrape (no secrets, no ticket data)",
    "/api/openapi.json": "the API description",
    "/api/event-types": "the public event catalogue (names and schemas)",
    "/static/<path:filename>": "static files",
    "/admin/static/<path:filename>": "the console's static files",
    "/admin/signin": "where the admin token is entered",
}
ZAPIER_PREFIX = "/api/zapier/"  # X-API-Key, tested below
CONSOLE_PREFIX = "/admin/"  # session cookie + CSRF, tested below


def _concrete(rule: str) -> str:
    """A URL for a rule, with a plausible value in each variable."""
    import re

    return re.sub(
        r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: {"event": "ticket.created"}.get(m.group(1), "x1"), rule
    )


@pytest.fixture
def full_app_client(make_client: Any) -> Any:
    return make_client(
        {
            "gateway": {"admin_token": ADMIN_TOKEN, "secret": INCOMING_SECRET},
            "delivery": {"allow_private_networks": True},
            "sinks": [
                {"name": "zap", "type": "zapier", "events": ["*"], "api_keys": [ZAPIER_KEY]},
                {
                    "name": "crm",
                    "type": "generic_webhook",
                    "url": "http://127.0.0.1:9/hook",
                    "events": ["*"],
                    "secret": SINK_SECRET,
                },
            ],
        }
    )


def _routes(client: Any) -> list[tuple[str, str]]:
    found = []
    for rule in client.application.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((rule.rule, method))
    return sorted(found)


def test_every_admin_endpoint_refuses_missing_and_wrong_tokens(full_app_client: Any) -> None:
    """Every API route that is not deliberately public answers 401 without a token and 403
    with a wrong one, whatever its arguments (so a route added later without the
    decorator fails here)."""
    checked = []
    for rule, method in _routes(full_app_client):
        if rule in PUBLIC or rule.startswith((ZAPIER_PREFIX, CONSOLE_PREFIX)):
            continue
        url = _concrete(rule)
        # Each route from its own address: 10 wrong tokens lock an address out with 429
        # (tests/web/test_auth_throttle.py), and this walk sends three per route.
        env = {"REMOTE_ADDR": f"198.51.100.{len(checked) + 1}"}
        missing = full_app_client.open(url, method=method, json={}, environ_base=env)
        assert missing.status_code == 401, (method, rule, missing.status_code)
        assert missing.get_json()["error"] == "unauthorized"
        assert missing.headers.get("WWW-Authenticate", "").startswith("Bearer")
        for header in (f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}", "Bearer " + "a" * 200):
            wrong = full_app_client.open(url, method=method, json={}, headers={"Authorization": header},
                                         environ_base=env)
            assert wrong.status_code == 403, (method, rule, header)
            assert wrong.get_json()["error"] == "forbidden"
            assert ADMIN_TOKEN not in wrong.get_data(as_text=True)
        # Another scheme carrying the right token is not a bearer token: still 401.
        basic = "Basic " + base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
        assert (
            full_app_client.open(url, method=method, json={}, headers={"Authorization": basic}).status_code
            == 401
        )
        checked.append((method, rule))
    # The admin API exists (a broken route listing must not pass this test vacuously).
    assert ("GET", "/api/deliveries") in checked and ("POST", "/api/events") in checked
    assert len(checked) >= 10


def test_no_admin_token_configured_means_the_admin_api_is_closed(make_client: Any) -> None:
    client = make_client()
    assert client.get("/api/deliveries").status_code == 401
    assert (
        client.get("/api/deliveries", headers={"Authorization": "Bearer anything-at-all"}).status_code == 403
    )


def test_zapier_endpoints_refuse_missing_and_wrong_keys(full_app_client: Any) -> None:
    routes = [(rule, method) for rule, method in _routes(full_app_client) if rule.startswith(ZAPIER_PREFIX)]
    assert routes
    for rule, method in routes:
        url = _concrete(rule)
        body = {"target_url": "https://hooks.zapier.com/x", "event": "ticket.created"}
        assert full_app_client.open(url, method=method, json=body).status_code == 401, (method, rule)
        wrong = full_app_client.open(url, method=method, json=body, headers={"X-API-Key": ZAPIER_KEY + "x"})
        assert wrong.status_code in (401, 403), (method, rule)
        assert ZAPIER_KEY not in wrong.get_data(as_text=True)


def test_console_pages_need_a_signed_in_session(full_app_client: Any) -> None:
    for rule, method in _routes(full_app_client):
        if not rule.startswith(CONSOLE_PREFIX) or rule in PUBLIC:
            continue
        response = full_app_client.open(_concrete(rule), method=method, headers={"Accept": "text/html"})
        assert response.status_code in (302, 303, 400, 401, 403), (method, rule, response.status_code)
        if response.status_code in (302, 303):
            assert "/admin/signin" in response.headers["Location"], (method, rule)
        # A bearer token is not a console session (the console has its own CSRF-checked sign-in).
        assert full_app_client.open(
            _concrete(rule), method=method, headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}
        ).status_code in (302, 303, 400, 401, 403)


# -- SSRF ----------------------------------------------------------------------------------------


def _attempts(client: Any, delivery_id: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/deliveries/{delivery_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["delivery"]["attempt_log"]


def _all_deliveries(client: Any) -> list[dict[str, Any]]:
    response = client.get("/api/deliveries?limit=1000", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["deliveries"]


def test_ssrf_guard_refuses_internal_destinations_end_to_end(
    make_client: Any, recording_sink: Any, drain_deliveries: Any
) -> None:
    """Sinks pointing at this machine by literal address, by other spellings of it and by a
    name that resolves to it: the delivery is refused with a clear error in the delivery
    log, and the server there never sees a request."""
    port = recording_sink.base_url.rsplit(":", 1)[1]
    urls = {
        "literal": f"http://127.0.0.1:{port}/hook",
        "dns-localhost": f"http://localhost:{port}/hook",
        "decimal": f"http://2130706433:{port}/hook",
        "hex": f"http://0x7f000001:{port}/hook",
        "credentials": f"http://user:{URL_PASSWORD}@localhost:{port}/hook",
        "ipv6-loopback": f"http://[::1]:{port}/hook",
    }
    sinks = [
        {
            "name": name,
            "type": "generic_webhook",
            "url": url,
            "events": ["ticket.created"],
            "secret": SINK_SECRET,
        }
        for name, url in urls.items()
    ]
    client = make_client(
        {
            "gateway": {"admin_token": ADMIN_TOKEN},
            "delivery": {"allow_private_networks": False, "retry_schedule": []},
            "sinks": sinks,
        }
    )
    assert (
        client.post(RECEIVE, data=ticket_body(), headers={"Content-Type": "application/json"}).status_code
        == 201
    )
    drain_deliveries(client.application)
    deliveries = _all_deliveries(client)
    assert sorted(d["sink"] for d in deliveries) == sorted(urls)
    for delivery in deliveries:
        [attempt] = _attempts(client, delivery["id"])
        assert attempt["error"]["code"] == "ssrf_refused", (delivery["sink"], attempt)
        assert "allow_private_networks" in attempt["error"]["message"]
        assert URL_PASSWORD not in json.dumps(attempt)
        assert delivery["status"] == "failed"
    assert recording_sink.requests == []


def test_redirects_are_never_followed(make_client: Any, recording_sink: Any, drain_deliveries: Any) -> None:
    """A sink answering 3xx towards an internal address: the gateway does not follow; the
    3xx is a failed attempt, and the redirect's target never hears from us."""
    internal_hits: list[str] = []

    class Internal(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            internal_hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    internal = ThreadingHTTPServer(("127.0.0.1", 0), Internal)
    threading.Thread(target=internal.serve_forever, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{internal.server_address[1]}/admin/secrets"
        recording_sink.reply(
            *(Reply(status, headers={"Location": target}) for status in (301, 302, 303, 307, 308))
        )
        client = make_client(
            {
                "gateway": {"admin_token": ADMIN_TOKEN},
                "delivery": {"allow_private_networks": True, "retry_schedule": []},
                "sinks": [recording_sink.sink("redirector", events=["ticket.created"])],
            }
        )
        for n in range(5):
            response = client.post(
                RECEIVE, data=ticket_body(f"T{n}"), headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 201
        drain_deliveries(client.application)
        attempts = [a for d in _all_deliveries(client) for a in _attempts(client, d["id"])]
        assert sorted(a["status_code"] for a in attempts) == [301, 302, 303, 307, 308]
        for attempt in attempts:  # a failed attempt that says why, not a delivery
            assert attempt["status"] == "failed" and attempt["error"]["code"] == "http_status", attempt
            assert "redirect not followed" in attempt["error"]["message"]
        assert internal_hits == []
        assert len(recording_sink.requests) == 5
    finally:
        internal.shutdown()
        internal.server_close()


# -- secrets never leak --------------------------------------------------------------------------


class EchoSink:
    """A destination that echoes every request's headers and body back in its response
    (as request inspectors do), failing the first request to each path with a 500."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                with owner.lock:
                    first = not any(path == self.path for path, _, _ in owner.requests)
                    owner.requests.append((self.path, headers, body))
                echo = json.dumps({"headers": headers, "body": body.decode("utf-8", "replace")}).encode()
                self.send_response(500 if first else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(echo)))
                self.end_headers()
                self.wfile.write(echo)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _redis_dump(redis: redis_lib.Redis) -> str:
    """Every value the gateway and rq keep in Redis, as text, except each delivery's
    ``target``: the destination URL from the config, which the worker needs to send to
    (and which may carry credentials, like the config file itself)."""
    parts: list[str] = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        if kind == "string":
            parts.append(repr(redis.get(key)))
        elif kind == "hash":
            parts.append(repr({k: v for k, v in redis.hgetall(key).items() if k != b"target"}))
        elif kind == "list":
            parts.append(repr(redis.lrange(key, 0, -1)))
        elif kind == "zset":
            parts.append(repr(redis.zrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(redis.smembers(key)))
        parts.append(key.decode(errors="replace"))
    return "\n".join(parts)


def _cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        capture_output=True,
        timeout=120,
        env=child_env(GATEWAY_LOG_LEVEL="DEBUG"),
    )
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def test_secrets_and_signatures_never_appear_in_logs_api_cli_or_the_delivery_log(
    make_client: Any,
    redis_url: str,
    redis_client: redis_lib.Redis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    drain_deliveries: Any,
) -> None:
    echo = EchoSink()
    worker: subprocess.Popen[bytes] | None = None
    try:
        config = {
            "gateway": {
                "redis_url": redis_url,
                "data_dir": str(tmp_path / "data"),
                "secret": INCOMING_SECRET,
                "admin_token": ADMIN_TOKEN,
            },
            "delivery": {"allow_private_networks": True, "retry_schedule": [0.5, 0.5], "retry_jitter": 0},
            "sinks": [
                {
                    "name": "crm",
                    "type": "generic_webhook",
                    "url": f"http://127.0.0.1:{echo.port}/crm",
                    "events": ["ticket.created"],
                    "secrets": [SINK_SECRET, OLD_SINK_SECRET],
                },
                {
                    "name": "basic",
                    "type": "generic_webhook",
                    "url": f"http://hook-user:{URL_PASSWORD}@127.0.0.1:{echo.port}/basic",
                    "events": ["ticket.created"],
                    "secret": SINK_SECRET,
                },
                {
                    "name": "slack",
                    "type": "slack",
                    "events": ["ticket.created"],
                    "url": f"http://127.0.0.1:{echo.port}/services/T0001/B0001/{SLACK_PATH_SECRET}",
                },
                {
                    "name": "down",
                    "type": "generic_webhook",
                    "events": ["ticket.created"],
                    "secret": SINK_SECRET,
                    "url": f"http://hook-user:{URL_PASSWORD}@127.0.0.1:9/down",
                },
                {"name": "zap", "type": "zapier", "events": ["*"], "api_keys": [ZAPIER_KEY]},
            ],
        }
        config_path = write_config(tmp_path / "gateway.toml", config)
        caplog.set_level(logging.DEBUG)
        client = make_client(config)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        outputs: list[str] = []
        signatures: list[str] = []

        body = ticket_body("First")
        hex_sig = signing.hex_signature(body, INCOMING_SECRET)
        signatures.append(hex_sig)
        outputs.append(client.post(RECEIVE, data=body, headers=signed_headers(body)).get_data(as_text=True))
        body2 = ticket_body("Second")
        std = {
            "webhook-id": "msg_sec_1",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": signing.standard_signature(
                "msg_sec_1", int(time.time()), body2, [INCOMING_SECRET]
            ),
        }
        signatures.append(std["webhook-signature"].split(",", 1)[1])
        response = client.post(RECEIVE, data=body2, headers={"Content-Type": "application/json", **std})
        assert response.status_code == 201, response.get_json()
        outputs.append(response.get_data(as_text=True))
        wrong = signing.hex_signature(body, "a-guess")
        signatures.append(wrong)
        refused = client.post(
            RECEIVE, data=body, headers={"Content-Type": "application/json", "X-Webhook-Signature": wrong}
        )
        assert refused.status_code == 401
        outputs.append(refused.get_data(as_text=True))

        # First attempts in this process (caplog sees them): every sink fails once.
        drain_deliveries(client.application)
        # The retries on a real worker process, whose output is captured too.
        worker_log = tmp_path / "worker.log"
        with open(worker_log, "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "gateway", "worker", "--config", str(config_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(GATEWAY_LOG_LEVEL="DEBUG"),
            )

        def settled() -> bool:
            statuses = [d["status"] for d in _all_deliveries(client)]
            return len(statuses) == 8 and statuses.count("delivered") == 6 and statuses.count("failed") == 2

        wait_until(settled, what="6 deliveries delivered and the 2 to a closed port failed")
        worker.terminate()
        worker.wait(DEADLINE_S)
        outputs.append(worker_log.read_text(errors="replace"))
        outputs.append(caplog.text)

        # What the sinks were sent: the signatures must not come back through our outputs.
        for _, headers, _ in echo.requests:
            for name, value in headers.items():
                if "signature" in name.lower() or name.lower() == "authorization":
                    signatures.extend(part.split(",", 1)[-1] for part in value.split())
        assert any(h.get("X-Webhook-Signature") for _, h, _ in echo.requests)
        assert any(h.get("Authorization", "").startswith("Basic ") for _, h, _ in echo.requests)

        for url in (
            "/api/deliveries?limit=1000",
            "/api/sinks",
            "/api/plugins",
            "/api/tickets",
            "/api/event-types",
            "/metrics",
        ):
            outputs.append(client.get(url, headers=admin).get_data(as_text=True))
        for delivery in _all_deliveries(client):
            outputs.append(
                client.get(f"/api/deliveries/{delivery['id']}", headers=admin).get_data(as_text=True)
            )
        outputs.append(
            client.get("/api/zapier/hooks", headers={"X-API-Key": ZAPIER_KEY}).get_data(as_text=True)
        )
        outputs.append(client.get("/api/zapier/hooks", headers={"X-API-Key": "nope"}).get_data(as_text=True))
        outputs.append(_cli(config_path, "config", "check"))
        outputs.append(_cli(config_path, "sinks", "--json"))
        outputs.append(_cli(config_path, "deliveries", "--json"))
        outputs.append(_cli(config_path, "delivery", "show", _all_deliveries(client)[0]["id"]))
        outputs.append(_redis_dump(redis_client))

        basic = base64.b64encode(f"hook-user:{URL_PASSWORD}".encode()).decode()
        needles = {
            "incoming secret": INCOMING_SECRET,
            "admin token": ADMIN_TOKEN,
            "sink secret": SINK_SECRET,
            "old sink secret": OLD_SINK_SECRET,
            "URL password": URL_PASSWORD,
            "basic auth": basic,
            "Slack URL token": SLACK_PATH_SECRET,
            "Zapier key": ZAPIER_KEY,
            "whsec form": signing.whsec_form(SINK_SECRET)[6:],
        }
        needles.update({f"signature {value[:8]}...": value for value in signatures if len(value) >= 16})
        everything = "\n".join(outputs)
        assert "crm" in everything and "delivered" in everything  # the outputs are real
        leaks = [label for label, needle in needles.items() if needle in everything]
        where = {label: [i for i, text in enumerate(outputs) if needles[label] in text] for label in leaks}
        assert not leaks, f"secrets found in outputs {where}"
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        echo.stop()


# -- Slack ---------------------------------------------------------------------------------------


def test_user_text_is_escaped_in_slack_messages(
    make_client: Any, recording_sink: Any, drain_deliveries: Any
) -> None:
    """A customer cannot ping a channel, forge a link or inject markup through a ticket."""
    client = make_client(
        {
            "gateway": {"public_url": "https://support.example.com"},
            "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("slack", type="slack", events=["ticket.created"])],
        }
    )
    hostile = "<!channel> <@U024BE7LH> <https://evil.example|Reset password> & <script>x</script>"
    response = client.post(
        RECEIVE,
        json={
            "event": "ticket.create",
            "data": {
                "subject": hostile,
                "message": hostile,
                "customer_email": "ann@example.com",
                "customer_name": "<!everyone> Eve",
                "category": "<#C024BE7LR>",
            },
        },
    )
    assert response.status_code == 201
    drain_deliveries(client.application)
    [request] = recording_sink.wait_for(1)
    message = request.json()
    text = json.dumps(message, ensure_ascii=False)
    for raw in (
        "<!channel>",
        "<!everyone>",
        "<@U024BE7LH>",
        "<https://evil.example",
        "<#C024BE7LR>",
        "<script>",
    ):
        assert raw not in text, raw
    assert "&lt;!channel&gt;" in text and "&amp;" in text
    # The only Slack markup left is the gateway's own: the link to the ticket.
    strings: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            strings.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message)
    for value in strings:
        remaining = value.replace("<https://support.example.com/tickets/", "")
        assert "<" not in remaining and ">" not in remaining, value


@pytest.fixture(autouse=True)
def _no_stray_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The subprocesses must use the config written by each test, not one from the environment.
    for name in ("GATEWAY_CONFIG", "GATEWAY_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert "GATEWAY_CONFIG" not in os.environ
