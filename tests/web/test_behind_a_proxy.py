"""Settings for running behind a proxy and a scraper: ``trusted_proxies`` (client
addresses from X-Forwarded-For) and ``metrics_token`` (a bearer token on /metrics)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from gateway import logs
from gateway.redact import REDACTED, redact

TICKET = {"event": "ticket.create", "data": {"subject": "Proxy", "message": "Behind nginx.",
                                             "customer_email": "ops@example.com"}}
METRICS_TOKEN = "scrape-token-5c1e"


@pytest.fixture
def access_lines() -> Any:
    stream = io.StringIO()
    logs.configure("json", "INFO", stream=stream)
    try:
        yield lambda: [line for line in map(json.loads, stream.getvalue().splitlines())
                       if line["logger"] == "gateway.access"]
    finally:
        logs.reset()


@pytest.mark.parametrize(("trusted", "expected"), [(0, "10.0.0.2"), (1, "203.0.113.7")])
def test_access_lines_name_the_client_only_behind_trusted_proxies(
        make_client: Any, access_lines: Any, trusted: int, expected: str) -> None:
    # Unsigned from a non-loopback client: accepted only because the operator said so.
    client = make_client({"gateway": {"trusted_proxies": trusted, "allow_unsigned": True}})
    forwarded = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    # The receive fast path and an ordinary Flask route alike.
    assert client.post("/api/webhooks/receive", json=TICKET, headers=forwarded, environ_base=proxy).status_code == 201
    assert client.get("/healthz", headers=forwarded, environ_base=proxy).status_code == 200
    assert [line["remote_addr"] for line in access_lines()] == [expected, expected]


def test_metrics_need_the_metrics_token_when_one_is_set(make_client: Any) -> None:
    client = make_client({"gateway": {"metrics_token": METRICS_TOKEN,
                                      "admin_token": "admin-token-9f0a-0123456789abcde"}})
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.get_json()["error"] == "unauthorized"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    for wrong in ("nope-nope-nope", "admin-token-9f0a-0123456789abcde"):  # the admin token is not a metrics token
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert answer.status_code == 403 and answer.get_json()["error"] == "forbidden"
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "gateway_http_requests_total" in scraped.get_data(as_text=True)
    assert METRICS_TOKEN not in scraped.get_data(as_text=True)


def test_metrics_stay_open_without_a_metrics_token(make_client: Any) -> None:
    assert make_client().get("/metrics").status_code == 200


def test_the_metrics_token_is_redacted_from_logs(make_client: Any) -> None:
    make_client({"gateway": {"metrics_token": METRICS_TOKEN}})
    assert redact(f"scraper said {METRICS_TOKEN}") == f"scraper said {REDACTED}"
