"""Failed admin authentications are throttled per client address (an IPv6 client's /64):
after 10 wrong tokens (bearer or sign-in form) the address gets 429 with Retry-After, even
with the right token, until the 15-minute window ends; a right token clears the count; Redis
down fails open. Wrong receive signatures are counted apart, with a higher limit."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.plugins import load_plugins
from gateway.runtime import Runtime
from gateway.storage.connection import EmbeddedRedis
from gateway.storage.throttle import SIGNATURES
from gateway.web.app import create_app
from gateway.web.auth_throttle import FAILURE_LIMIT, WINDOW_SECONDS

TOKEN = "admin-token-for-throttle-tests-0123456"
WRONG = "not-the-admin-token"
GUESSER = "203.0.113.7"
NEIGHBOUR = "203.0.113.8"


def api(client: Any, token: str | None, addr: str = GUESSER) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/api/tickets", headers=headers, environ_base={"REMOTE_ADDR": addr})


def sign_in(client: Any, token: str, addr: str = GUESSER) -> Any:
    form_page = client.get("/admin/signin", environ_base={"REMOTE_ADDR": addr}).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', form_page)
    assert match, "sign-in page has no CSRF field"
    return client.post("/admin/signin", data={"token": token, "csrf_token": match.group(1)},
                       environ_base={"REMOTE_ADDR": addr})


def assert_locked_out_api(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.get_json()["error"] == "too_many_attempts"
    assert 0 < int(response.headers["Retry-After"]) <= WINDOW_SECONDS
    assert TOKEN not in response.text


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}})


def test_ten_wrong_bearer_tokens_lock_the_address_out_even_for_the_right_token(client: Any) -> None:
    for _ in range(FAILURE_LIMIT):
        wrong = api(client, WRONG)
        assert wrong.status_code == 403 and wrong.get_json()["error"] == "forbidden"
    assert_locked_out_api(api(client, TOKEN))
    assert_locked_out_api(api(client, WRONG))
    # Not a guess, so still the plain 401 that says how to authenticate.
    assert api(client, None).status_code == 401
    # Another address is not affected.
    assert api(client, TOKEN, addr=NEIGHBOUR).status_code == 200


def test_the_lock_out_lasts_the_window_and_locked_attempts_do_not_extend_it(
    client: Any, redis_client: Any
) -> None:
    for _ in range(FAILURE_LIMIT):
        api(client, WRONG)
    key = f"gw:authfail:{GUESSER}"
    assert redis_client.get(key) == str(FAILURE_LIMIT).encode()
    assert 0 < redis_client.ttl(key) <= WINDOW_SECONDS
    redis_client.expire(key, 42)  # as if most of the window had passed
    assert_locked_out_api(api(client, WRONG))
    assert int(api(client, TOKEN).headers["Retry-After"]) <= 42
    assert redis_client.get(key) == str(FAILURE_LIMIT).encode()
    redis_client.delete(key)  # the window ended
    assert api(client, TOKEN).status_code == 200


def test_a_right_token_clears_the_count(client: Any, redis_client: Any) -> None:
    for _ in range(FAILURE_LIMIT - 1):
        assert api(client, WRONG).status_code == 403
    assert api(client, TOKEN).status_code == 200
    assert redis_client.exists(f"gw:authfail:{GUESSER}") == 0
    for _ in range(FAILURE_LIMIT - 1):
        assert api(client, WRONG).status_code == 403
    assert api(client, TOKEN).status_code == 200


def test_missing_tokens_are_not_counted(client: Any, redis_client: Any) -> None:
    for _ in range(FAILURE_LIMIT + 5):
        assert api(client, None).status_code == 401
    assert redis_client.exists(f"gw:authfail:{GUESSER}") == 0
    assert api(client, TOKEN).status_code == 200


def test_the_sign_in_form_counts_and_locks_out_the_same_way(client: Any) -> None:
    for _ in range(FAILURE_LIMIT):
        refused = sign_in(client, WRONG)
        assert refused.status_code == 401 and "That admin token is not valid." in refused.text
    locked = sign_in(client, TOKEN)
    assert locked.status_code == 429
    assert 0 < int(locked.headers["Retry-After"]) <= WINDOW_SECONDS
    assert "Too many failed sign-ins from your address. Try again in 15 minutes." in locked.text
    assert TOKEN not in locked.text
    assert client.get("/admin/integrations", environ_base={"REMOTE_ADDR": GUESSER}).status_code == 302
    # One count for both doors: the API is closed to this address too.
    assert_locked_out_api(api(client, TOKEN))
    # Another address signs in.
    assert sign_in(client, TOKEN, addr=NEIGHBOUR).status_code == 302


def test_wrong_bearer_tokens_count_towards_the_form_and_a_form_success_clears_them(client: Any) -> None:
    for _ in range(FAILURE_LIMIT - 1):
        api(client, WRONG)
    assert sign_in(client, TOKEN).status_code == 302
    client.delete_cookie("gateway_admin")  # signed out again, to guess on the form
    for _ in range(FAILURE_LIMIT - 1):
        assert sign_in(client, WRONG).status_code == 401
    assert api(client, TOKEN).status_code == 200


def test_redis_stopped_sign_in_fails_open_without_a_500(tmp_path: Path, caplog: Any) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        plugins = load_plugins()
        settings = parse_config({"gateway": {"redis_url": server.url, "data_dir": str(tmp_path / "data"),
                                             "admin_token": TOKEN}}, plugins)
        app = create_app(Runtime.from_settings(settings, plugins))
        app.testing = True
        client = app.test_client()
        server.stop()

        with caplog.at_level(logging.WARNING):
            assert sign_in(client, WRONG).status_code == 401
            assert sign_in(client, TOKEN).status_code == 302
            assert client.get("/admin/integrations").status_code != 500
            # The API needs Redis for its answer anyway: 503 (from the view), never a 500.
            assert api(client, WRONG).status_code == 403
            assert api(client, TOKEN).status_code == 503
        throttle_warnings = [r.getMessage() for r in caplog.records if "auth throttle" in r.getMessage()]
        assert throttle_warnings
        assert not any(TOKEN in r.getMessage() or WRONG in r.getMessage() for r in caplog.records)
    finally:
        server.stop()


def test_an_ipv6_client_is_counted_by_its_64(client: Any) -> None:
    # Issue 13: one address per guess is free in an IPv6 /64; the whole /64 is one client.
    for index in range(FAILURE_LIMIT):
        assert api(client, WRONG, addr=f"2001:db8:1:2::{index + 1:x}").status_code == 403
    assert_locked_out_api(api(client, TOKEN, addr="2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert api(client, TOKEN, addr="2001:db8:1:3::1").status_code == 200  # the next /64 is someone else


# -- receive signatures: counted per address too, with a higher limit ------------------------

SECRET = "receive-secret-for-throttle-tests"
TICKET = b'{"event": "ticket.create", "data": {"subject": "s", "message": "m", "customer_email": "a@example.com"}}'


def receive(client: Any, secret: str, addr: str = GUESSER) -> Any:
    signature = hmac.new(secret.encode(), TICKET, hashlib.sha256).hexdigest()
    return client.post("/api/webhooks/receive", data=TICKET, environ_base={"REMOTE_ADDR": addr},
                       headers={"Content-Type": "application/json", "X-Webhook-Signature": signature})


def test_wrong_receive_signatures_get_401_then_429_for_the_address(make_client: Any, redis_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN, "secret": SECRET}})
    # A sender with a wrong secret hears what is wrong, many times over, before the throttle.
    for _ in range(SIGNATURES.failures):
        wrong = receive(client, "a-wrong-secret")
        assert wrong.status_code == 401 and wrong.get_json()["error"] == "signature_invalid"
    locked = receive(client, "a-wrong-secret")
    assert locked.status_code == 429 and locked.get_json()["error"] == "too_many_attempts"
    assert 0 < int(locked.headers["Retry-After"]) <= SIGNATURES.window_s
    # Locked out means locked out: a right guess now would not be told apart from a wrong one.
    assert receive(client, SECRET).status_code == 429
    assert receive(client, SECRET, addr=NEIGHBOUR).status_code == 201
    assert redis_client.zcard("gw:tickets") == 1
    # Another process of the gateway (a new app on the same Redis) learns it from its first failure.
    other = make_client({"gateway": {"admin_token": TOKEN, "secret": SECRET}})
    assert receive(other, "a-wrong-secret").status_code == 429
    # The admin token's count is apart: the address may still use the admin API.
    assert api(client, TOKEN).status_code == 200
