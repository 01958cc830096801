"""Integrations managed at runtime, end to end, as a new admin would try them: a real
``gateway run`` (gunicorn with two web processes, two delivery worker processes) on a real
Redis, destinations that are real HTTP servers, and nothing but HTTP calls to the admin API.
No restart between a change and the events that must follow it, except the one that checks
the store survives a restart."""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import standardwebhooks
from support.configs import write_config
from support.processes import ServedProcess, start_gateway

from gateway.testing import RecordingSink, Reply, wait_until

TOKEN = "live-admin-token-0123456789abcdef0123"
TICKET = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Help",
                                             "customer_email": "a@example.com"}}
WAIT_S = 90.0  # a deadline, not a measurement: CI runs several test processes on two cores


# ---- verbatim from the guide ("Verifying Signatures", Python) ----
def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload.encode(),
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)
# ---- end of the guide's code ----


class Admin:
    """The admin API of a running gateway, with the bearer token."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.url + path, timeout=60, **kwargs)


def destinations(n: int) -> list[RecordingSink]:
    return [RecordingSink().start() for _ in range(n)]


@pytest.fixture
def sinks() -> Iterator[list[RecordingSink]]:
    started = destinations(3)
    try:
        yield started
    finally:
        for sink in started:
            sink.stop()


def run(tmp_path: Path, redis_url: str) -> ServedProcess:
    config = write_config(tmp_path / "gateway.toml", {
        "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": TOKEN},
        "delivery": {"allow_private_networks": True, "retry_jitter": 0}})
    return start_gateway(tmp_path, "run", "--config", str(config), "--web-workers", "2", "--workers", "2",
                         ready_path="/healthz")


def post_ticket(url: str, secret: str | None = None, subject: str = "Printer on fire") -> int:
    body = json.dumps({**TICKET, "data": {**TICKET["data"], "subject": subject}}).encode()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Webhook-Signature"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(url + "/api/webhooks/receive", data=body, headers=headers, timeout=60).status_code


def subjects(sink: RecordingSink) -> list[str]:
    return [r.json()["data"]["ticket"]["subject"] for r in sink.requests]


def test_integrations_change_live_in_every_process(tmp_path: Path, redis_url: str, redis_client: Any,
                                                   sinks: list[RecordingSink]) -> None:
    first, second, slack = sinks
    gateway = run(tmp_path, redis_url)
    try:
        admin = Admin(gateway.url)
        # Create: delivered with no restart, signed with the secret shown once.
        created = admin("POST", "/api/sinks", json={"name": "crm", "type": "generic_webhook", "url": first.url,
                                                    "events": ["ticket.created"], "retry_schedule": [3600]})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        assert post_ticket(gateway.url, subject="after create") == 201
        [request] = first.wait_for(1, timeout=WAIT_S)
        assert verify_signature(request.body.decode(), request.header("X-Webhook-Signature"), secret)
        assert admin("POST", "/api/sinks", json={"name": "slack-support", "type": "slack", "url": slack.url,
                                                 "events": ["ticket.created"]}).status_code == 201

        # PATCH the URL: every ticket after the answer goes to the new one, whichever web
        # process takes it and whichever worker delivers it.
        assert admin("PATCH", "/api/sinks/crm", json={"url": second.url}).status_code == 200
        for i in range(6):
            assert post_ticket(gateway.url, subject=f"after patch {i}") == 201
        second.wait_for(6, timeout=WAIT_S)
        assert subjects(first) == ["after create"]
        assert sorted(subjects(second)) == [f"after patch {i}" for i in range(6)]

        # Disable: nothing more is sent to it (Slack, still enabled, shows the tickets went out).
        assert admin("PATCH", "/api/sinks/crm", json={"enabled": False}).status_code == 200
        for i in range(3):
            assert post_ticket(gateway.url, subject=f"while disabled {i}") == 201
        wait_until(lambda: len(slack.requests) >= 6 + 3, "the Slack sink to get every ticket", WAIT_S)
        assert len(second.requests) == 6
        assert admin("PATCH", "/api/sinks/crm", json={"enabled": True}).status_code == 200

        # Rotate: both secrets sign during the overlap; X-Webhook-Signature uses the new one.
        new_secret = admin("POST", "/api/sinks/crm/rotate-secret").json()["secret"]
        assert post_ticket(gateway.url, subject="after rotate") == 201
        rotated = second.wait_for(7, timeout=WAIT_S)[6]
        headers = {k.lower(): v for k, v in rotated.headers.items()}
        assert verify_signature(rotated.body.decode(), headers["x-webhook-signature"], new_secret)
        for each in (secret, new_secret):
            standardwebhooks.Webhook(each).verify(rotated.body, headers)

        # Stale If-Match: refused, nothing changed.
        etag = admin("GET", "/api/sinks/crm").headers["ETag"]
        assert admin("PATCH", "/api/sinks/crm", json={"max_in_flight": 4}, headers={"If-Match": etag}).ok
        stale = admin("PATCH", "/api/sinks/crm", json={"max_in_flight": 9}, headers={"If-Match": etag})
        assert stale.status_code == 412
        assert admin("GET", "/api/sinks/crm").json()["sink"]["max_in_flight"] == 4

        # The receive secret: set, then rotated; old and new accepted during the overlap.
        receive_first = admin("POST", "/api/receive-secret/rotate").json()["secret"]
        assert (post_ticket(gateway.url), post_ticket(gateway.url, receive_first)) == (401, 201)
        receive_second = admin("POST", "/api/receive-secret/rotate").json()["secret"]
        assert [post_ticket(gateway.url, s) for s in (receive_first, receive_second, "wrong")] == [201, 201, 401]

        # Twenty admins PATCH at once: the sink ends in one of their twenty states.
        states = [{"url": second.url + f"/{i}", "max_in_flight": i + 1, "timeout": i + 2} for i in range(20)]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda s: admin("PATCH", "/api/sinks/crm", json=s).status_code, states))
        assert answers == [200] * 20
        final = admin("GET", "/api/sinks/crm").json()["sink"]
        url_tail = next(s["url"].rsplit("/", 1)[1] for s in states if s["max_in_flight"] == final["max_in_flight"])
        assert states[int(url_tail)]["timeout"] == final["timeout"]
        assert final["options"]["url"].startswith("http://127.0.0.1:")
    finally:
        gateway.stop()

    # Restart: the sinks created through the API are still there, and still deliver.
    gateway = run(tmp_path, redis_url)
    try:
        admin = Admin(gateway.url)
        listed = admin("GET", "/api/sinks").json()["sinks"]
        assert [(s["name"], s["source"]) for s in listed] == [("crm", "api"), ("slack-support", "api")]
        before = len(second.requests)
        third_url = second.url.rsplit("/", 1)[0] + "/after-restart"
        admin("PATCH", "/api/sinks/crm", json={"url": third_url})
        assert post_ticket(gateway.url, receive_second, subject="after restart") == 201
        wait_until(lambda: len(second.requests) > before, "a delivery after the restart", WAIT_S)
        assert second.requests[-1].path == "/after-restart"

        # Delete with deliveries waiting: cancelled, and none arrives.
        second.default = Reply(503)
        count = len(second.requests)
        for i in range(3):
            assert post_ticket(gateway.url, receive_second, subject=f"before delete {i}") == 201
        wait_until(lambda: len(admin("GET", "/api/deliveries?sink=crm&status=retrying").json()["deliveries"]) == 3,
                   "three deliveries waiting for their retry", WAIT_S)
        assert admin("DELETE", "/api/sinks/crm").status_code == 204
        log = admin("GET", "/api/deliveries?sink=crm&status=cancelled").json()["deliveries"]
        assert len(log) == 3 and {d["cancel_reason"] for d in log} == {"sink_deleted"}
        assert len(second.requests) == count + 3  # their first attempts, before the delete; no more
        assert post_ticket(gateway.url, receive_second, subject="after delete") == 201
        wait_until(lambda: "after delete" in slack.requests[-1].json()["text"], "Slack's copy of it", WAIT_S)

        # The audit log tells the story, and holds no secret.
        entries = admin("GET", "/api/audit?limit=500").json()["entries"]
        actions = [e["action"] for e in reversed(entries)]
        assert actions[:6] == ["create", "create", "update", "disable", "enable", "rotate"]
        assert actions[-1] == "delete" and actions.count("update") == 1 + 1 + 20 + 1
        assert {e["actor"] for e in entries} == {"admin"}
        text = json.dumps(entries)
        for value in (secret, new_secret, receive_first, receive_second, slack.url):
            assert value not in text
    finally:
        gateway.stop()
    assert len(second.requests) == count + 3
