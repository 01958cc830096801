"""The receive path's own memory of addresses locked out for wrong signatures
(gateway.web.receive.ReceiveApp): a locked-out sender hears 429 until the window ends, then
gets in again; the memory is bounded, whatever number of addresses get locked out.

The clock the lock-out reads (``time.monotonic`` in gateway.web.receive) is driven by the
test, so "the window ended" is a step, not a wait.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from werkzeug.test import Client

from gateway.storage.throttle import SIGNATURES
from gateway.web import receive

SECRET = "receive-secret-for-lockout-tests-0123"
TICKET = b'{"event": "ticket.create", "data": {"subject": "s", "message": "m", "customer_email": "a@example.com"}}'


class Clock:
    """Stands in for the ``time`` module gateway.web.receive reads ``monotonic()`` from."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(receive, "time", clock)
    return clock


@pytest.fixture
def app(make_runtime: Any) -> receive.ReceiveApp:
    return receive.ReceiveApp(make_runtime({"gateway": {"secret": SECRET}}))


def post(app: receive.ReceiveApp, secret: str, addr: str) -> Any:
    signature = hmac.new(secret.encode(), TICKET, hashlib.sha256).hexdigest()
    return Client(app).post("/", data=TICKET, environ_base={"REMOTE_ADDR": addr},
                            headers={"Content-Type": "application/json", "X-Webhook-Signature": signature})


def lock_out(app: receive.ReceiveApp, redis_client: Any, addr: str) -> None:
    """One wrong signature short of the limit, then the one that reaches it (still a 401)."""
    redis_client.set(f"gw:sigfail:{addr}", SIGNATURES.failures - 1, ex=SIGNATURES.window_s)
    assert post(app, "a-wrong-secret", addr).status_code == 401


def test_a_locked_out_sender_hears_429_until_the_window_ends_then_gets_in(
        app: receive.ReceiveApp, redis_client: Any, clock: Clock) -> None:
    sender = "203.0.113.30"
    lock_out(app, redis_client, sender)
    locked = post(app, SECRET, sender)
    assert locked.status_code == 429 and locked.json["error"] == "too_many_attempts"
    assert locked.headers["Retry-After"] == str(SIGNATURES.window_s)
    clock.now += SIGNATURES.window_s - 1
    assert post(app, SECRET, sender).headers["Retry-After"] == "1"
    clock.now += 1  # the window ends this instant (and Redis forgets the count with it)
    redis_client.delete(f"gw:sigfail:{sender}")
    assert post(app, SECRET, sender).status_code == 201
    assert redis_client.zcard("gw:tickets") == 1


def test_the_memory_of_locked_out_addresses_stays_within_its_bound(
        app: receive.ReceiveApp, redis_client: Any, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    # Many addresses locked out (an attacker with many of them) never grow it past the bound.
    monkeypatch.setattr(receive, "MAX_LOCKED_REMEMBERED", 2)
    lock_out(app, redis_client, "203.0.113.40")
    lock_out(app, redis_client, "203.0.113.41")
    # Up to the bound, every one is remembered: refused without being judged.
    assert post(app, SECRET, "203.0.113.40").status_code == 429
    assert post(app, SECRET, "203.0.113.41").status_code == 429
    for n in range(2, 6):
        lock_out(app, redis_client, f"203.0.113.{40 + n}")
        assert 0 < len(app._locked) <= 2
    # The last one is remembered still.
    assert post(app, SECRET, "203.0.113.45").status_code == 429
