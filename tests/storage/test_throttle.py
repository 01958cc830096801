"""gateway.storage.throttle's windows, exactly: the first failure of an address starts a
15-minute window for admin credentials and for receive signatures alike.

The web tests (tests/web/test_auth_throttle*.py) read the window through Retry-After or the
key's TTL a request later, so they allow a minute for a loaded machine and cannot tell 15
minutes from 14¾. Here the seconds left come from the TTL read in the same MULTI as the SET
that starts the window: no time passes between the two, so the number is exact without any
timed assertion.
"""

from __future__ import annotations

from typing import Any

from gateway.storage.keys import Keys
from gateway.storage.throttle import FailureThrottle, Limit, client_group, credential_throttle, signature_throttle

ADDRESS = "198.51.100.7"


def test_the_first_wrong_credential_starts_a_window_of_exactly_fifteen_minutes(redis_client: Any) -> None:
    throttle = credential_throttle(redis_client, Keys("gw:"), ADDRESS)
    first = throttle.failed()
    assert (first.failures, first.seconds_left, first.limit) == (1, 15 * 60, 10)
    assert redis_client.get(f"gw:authfail:{ADDRESS}") == b"1"


def test_the_first_wrong_signature_starts_a_window_of_exactly_fifteen_minutes(redis_client: Any) -> None:
    throttle = signature_throttle(redis_client, Keys("gw:"), ADDRESS)
    first = throttle.failed()
    assert (first.failures, first.seconds_left, first.limit) == (1, 15 * 60, 100)


def test_later_failures_do_not_start_the_window_again(redis_client: Any) -> None:
    throttle = credential_throttle(redis_client, Keys("gw:"), ADDRESS)
    throttle.failed()
    redis_client.expire(f"gw:authfail:{ADDRESS}", 300)  # as if ten minutes had passed
    second = throttle.failed()
    assert second.failures == 2 and second.seconds_left <= 300


def test_an_address_with_no_failures_stands_at_zero(redis_client: Any) -> None:
    standing = credential_throttle(redis_client, Keys("gw:"), ADDRESS).standing()
    assert (standing.failures, standing.seconds_left, standing.limit, standing.locked) == (0, 0, 10, False)


def test_an_address_that_is_not_an_ip_is_its_own_group_cut_at_64_characters() -> None:
    # A unix-socket server's peer name, or a proxy header's odd value: counted as given, bounded.
    assert client_group("x" * 100) == "x" * 64
    assert client_group("not-an-ip") == "not-an-ip"


def test_a_failure_in_the_last_moment_of_a_window_still_says_at_least_one_second_left(redis_client: Any) -> None:
    # Redis rounds a TTL to whole seconds, so a window with under half a second to go reads 0:
    # the Retry-After told to the client is then 1 s (never 0, which says "retry now"). If the
    # window has ended before failed() runs (a very slow machine), a new one starts: 15 minutes.
    throttle = credential_throttle(redis_client, Keys("gw:"), ADDRESS)
    throttle.failed()
    redis_client.pexpire(f"gw:authfail:{ADDRESS}", 400)
    assert throttle.failed().seconds_left in (1, 15 * 60)


def test_a_one_second_window_has_one_second_left_at_its_first_failure(redis_client: Any) -> None:
    throttle = FailureThrottle(redis_client, "gw:authfail:short", ADDRESS, Limit(3, 1, "credential"))
    assert throttle.failed().seconds_left == 1


def test_a_zoned_ipv6_address_is_counted_in_its_64_as_without_the_zone() -> None:
    assert client_group("fe80::1:2:3:4%eth0") == client_group("fe80::1:2:3:4") == "fe80::/64"
