"""The admin token throttle's documented numbers, spelled out (test_auth_throttle.py uses
the module's constants, so it would follow a changed limit): 10 wrong tokens from one
address lock it out, 9 do not; the window is 15 minutes; the locked sign-in form says how
many minutes are left, rounded up."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import redis as redis_lib
from support.processes import free_port

from gateway.storage.keys import Keys
from gateway.storage.throttle import Standing, credential_throttle

TOKEN = "throttle-limits-admin-token-0123456789"
WRONG = "throttle-limits-wrong-token-0123456789"
GUESSER = "203.0.113.9"
KEY = f"gw:authfail:{GUESSER}"


def api(client: Any, token: str) -> Any:
    return client.get("/api/tickets", headers={"Authorization": f"Bearer {token}"},
                      environ_base={"REMOTE_ADDR": GUESSER})


def sign_in(client: Any, token: str) -> Any:
    page = client.get("/admin/signin", environ_base={"REMOTE_ADDR": GUESSER}).text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match
    return client.post("/admin/signin", data={"token": token, "csrf_token": match.group(1)},
                       environ_base={"REMOTE_ADDR": GUESSER})


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}})


def test_nine_wrong_tokens_do_not_lock_the_address_out_and_the_tenth_does(client: Any, redis_client: Any) -> None:
    for _ in range(9):
        assert api(client, WRONG).status_code == 403
    assert redis_client.get(KEY) == b"9"
    assert api(client, TOKEN).status_code == 200  # and the right token clears the count
    assert redis_client.get(KEY) is None
    for _ in range(10):
        assert api(client, WRONG).status_code == 403
    locked = api(client, TOKEN)
    assert locked.status_code == 429
    assert 15 * 60 - 60 < int(locked.headers["Retry-After"]) <= 15 * 60


def test_the_window_is_fifteen_minutes_from_the_first_failure(client: Any, redis_client: Any) -> None:
    assert api(client, WRONG).status_code == 403
    assert 15 * 60 - 60 < redis_client.ttl(KEY) <= 15 * 60


@pytest.mark.parametrize(("seconds_left", "said"), [(900, "15 minutes"), (850, "15 minutes"), (119, "2 minutes"),
                                                    (60, "1 minute."),
                                                    (30, "1 minute.")])
def test_the_locked_sign_in_form_says_the_minutes_left_rounded_up(client: Any, redis_client: Any,
                                                                   seconds_left: int, said: str) -> None:
    redis_client.set(KEY, 10, ex=seconds_left)
    page = sign_in(client, TOKEN)
    assert page.status_code == 429
    assert int(page.headers["Retry-After"]) <= seconds_left
    assert f"Try again in {said}" in page.text


def test_a_lock_out_ending_this_instant_still_says_one_second(client: Any, redis_client: Any) -> None:
    # The count is at the limit but the key has no expiry left to read (-1): the answer
    # still says to come back, never "Retry-After: 0" or a negative number.
    redis_client.set(KEY, 10)
    locked = api(client, TOKEN)
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "1"


def test_with_redis_down_the_throttle_counts_nothing_locks_nothing_and_raises_nothing(caplog: Any) -> None:
    down = redis_lib.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    throttle = credential_throttle(down, Keys("gw:"), GUESSER)
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        assert throttle.standing() == Standing(0, 0) and not throttle.standing().locked
        throttle.failed()
        throttle.succeeded(Standing(3, 0))  # had failures: tries to clear them
    warnings = [r.getMessage() for r in caplog.records]
    assert any("cannot read credential failures" in w for w in warnings)
    assert any("cannot count a credential failure" in w for w in warnings)
    assert any("cannot clear credential failures" in w for w in warnings)


def test_more_failures_than_the_limit_still_say_when_to_come_back(client: Any, redis_client: Any) -> None:
    # Requests racing in from several processes can count past 10 before the lock-out is seen.
    redis_client.set(KEY, 12, ex=100)
    locked = api(client, TOKEN)
    assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 100
