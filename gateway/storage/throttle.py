"""Failed attempts at a secret per client address, and the lock-out they lead to.

Every place a secret can be guessed counts its failures here: admin tokens (the console's
sign-in form and the admin API's bearer token) and plugins' credentials (Zapier's
``X-API-Key``) in one count per address, so an address gets the same number of guesses
whichever door it knocks on; receive signatures in a count of their own, with a higher
limit (a sender with a wrong secret hears ``401`` many times before ``429``). The counts
live in Redis, so every web process of every machine sees them.

A fixed window: the first failure starts it, later failures do not extend it, and an
address with ``limit.failures`` failures is locked out until it ends. An IPv6 client is
counted by its /64 (one subscriber's allocation: an attacker has billions of addresses in
it, not one), an IPv4-mapped IPv6 address as the IPv4 address it is. Behind a reverse proxy
every client has the proxy's address unless ``trusted_proxies`` is set (see
docs/configuration.md), so there the limit is shared by all clients.

Redis being down never turns an authentication into a 500: the check fails open and a
warning is logged.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable
from typing import TypeVar

import redis

from gateway.errors import too_many_attempts
from gateway.storage.keys import Keys

T = TypeVar("T")

log = logging.getLogger("gateway.auth")


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class Limit:
    """How many failures one address may have in a window of ``window_s`` seconds."""

    failures: int
    window_s: int
    what: str
    """What is being guessed, for the log: "admin credential", "receive signature"."""


CREDENTIALS = Limit(10, 15 * 60, "credential")
"""Admin tokens (bearer or sign-in form) and plugin credentials (Zapier's X-API-Key), together."""
SIGNATURES = Limit(100, 15 * 60, "receive signature")
"""Wrong signatures on ``POST /api/webhooks/receive``: a misconfigured sender's retries
should hear 401 ``signature_invalid`` (and be fixed) long before they hear 429."""


def client_group(address: str | None) -> str:
    """Who a failure is counted against: the IPv4 address, the /64 of an IPv6 one
    (``2001:db8:1:2::/64``), or ``unknown`` (a unix-socket server without a proxy header:
    all such clients share one count)."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class Standing:
    """An address's failures in the current window, the seconds left in it, and the limit."""

    failures: int = 0
    seconds_left: int = 0
    limit: int = CREDENTIALS.failures

    @property
    def locked(self) -> bool:
        """True when the address may not authenticate until the window ends."""
        return self.failures >= self.limit


class FailureThrottle:
    """Counts failed attempts of one client group (:func:`client_group`) under ``key``."""

    def __init__(self, client: redis.Redis, key: str, group: str, limit: Limit = CREDENTIALS) -> None:
        self.redis = client
        self.key = key
        self.group = group
        self.limit = limit

    def standing(self) -> Standing:
        """The group's failures so far; none when Redis is down. One GET (the TTL is read
        only for a locked-out group)."""
        try:
            failures = int(self.redis.get(self.key) or 0)
            if failures < self.limit.failures:
                return Standing(failures, limit=self.limit.failures)
            # Expired since the GET (-2): 1 s, and the next request finds no lock-out.
            return Standing(failures, max(int(self.redis.ttl(self.key)), 1), self.limit.failures)
        except redis.RedisError as error:
            log.warning("auth throttle: cannot read %s failures of %s (%s); not limiting", self.limit.what,
                        self.group, type(error).__name__)
            return Standing(limit=self.limit.failures)

    def failed(self) -> Standing:
        """Count one failure (the first one in a window starts it; one round trip) and
        return the standing with it counted."""
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                # SET NX EX then INCR in one MULTI: the window starts once and INCR keeps its TTL,
                # so the key can never be left without an expiry (a lock-out for ever).
                pipe.set(self.key, 0, ex=self.limit.window_s, nx=True)
                pipe.incr(self.key)
                pipe.ttl(self.key)
                _, failures, ttl = pipe.execute()
            return Standing(int(failures), max(int(ttl), 1), self.limit.failures)
        except redis.RedisError as error:
            log.warning("auth throttle: cannot count a %s failure of %s (%s)", self.limit.what, self.group,
                        type(error).__name__)
            return Standing(limit=self.limit.failures)

    def check(self, given: str, match: Callable[[str], T | None], what: str) -> T | None:
        """``match(given)`` behind the lock-out: 429 ``too_many_attempts`` (naming ``what``,
        e.g. "admin tokens") without calling it once the group is locked out; a None
        answer counts as a failure, any other clears the count and is returned."""
        standing = self.standing()
        if standing.locked:  # not even compared: otherwise the guessing would go on
            raise too_many_attempts(standing.seconds_left, what)
        found = match(given)
        if found is None:
            self.failed()
        else:
            self.succeeded(standing)
        return found

    def succeeded(self, standing: Standing) -> None:
        """A right credential clears the group's failures (no write when it had none)."""
        if not standing.failures:
            return
        try:
            self.redis.delete(self.key)
        except redis.RedisError as error:
            log.warning("auth throttle: cannot clear %s failures of %s (%s)", self.limit.what, self.group,
                        type(error).__name__)


def credential_throttle(client: redis.Redis, keys: Keys, address: str | None) -> FailureThrottle:
    """The throttle of admin tokens and plugin credentials for a client ``address``."""
    group = client_group(address)
    return FailureThrottle(client, keys.auth_failures(group), group, CREDENTIALS)


def signature_throttle(client: redis.Redis, keys: Keys, address: str | None) -> FailureThrottle:
    """The throttle of receive signatures for a client ``address``."""
    group = client_group(address)
    return FailureThrottle(client, keys.signature_failures(group), group, SIGNATURES)
