"""Failed admin authentications per client address, and the lock-out they lead to.

Shared by the console's sign-in form and the admin API's bearer-token check, so one
address gets the same number of guesses whichever door it knocks on. The count lives in
Redis (``<prefix>authfail:<addr>``), so every web process of every machine sees it.

A fixed window: the first failure starts it, later failures do not extend it, and an
address with :data:`FAILURE_LIMIT` failures is locked out until it ends. Behind a reverse
proxy every client has the proxy's address unless ``trusted_proxies`` is set (see
docs/configuration.md), so there the limit is shared by all clients.

Redis being down never turns an authentication into a 500: the check fails open (the
console sign-in needs no Redis otherwise) and a warning is logged.
"""

from __future__ import annotations

import dataclasses
import logging

import redis
from flask import current_app, request

from gateway.storage.keys import Keys

log = logging.getLogger("gateway.auth")

FAILURE_LIMIT = 10
WINDOW_SECONDS = 15 * 60


@dataclasses.dataclass(frozen=True)
class Standing:
    """An address's failures in the current window, and the seconds left in that window."""

    failures: int = 0
    seconds_left: int = 0

    @property
    def locked(self) -> bool:
        """True when the address may not authenticate until the window ends."""
        return self.failures >= FAILURE_LIMIT


class AuthThrottle:
    """Counts failed admin authentications of one client address."""

    def __init__(self, client: redis.Redis, keys: Keys, address: str | None) -> None:
        self.redis = client
        # No address (a unix-socket server without a proxy header): all such clients share one count.
        self.address = address or "unknown"
        self.key = keys.auth_failures(self.address)

    def standing(self) -> Standing:
        """The address's failures so far; no failures when Redis is down. One GET on every
        admin request (the TTL is read only for a locked-out address)."""
        try:
            failures = int(self.redis.get(self.key) or 0)
            if failures < FAILURE_LIMIT:
                return Standing(failures)
            # Expired since the GET (-2): 1 s, and the next request finds no lock-out.
            return Standing(failures, max(int(self.redis.ttl(self.key)), 1))
        except redis.RedisError as error:
            log.warning("admin auth throttle: cannot read failures of %s (%s); not limiting",
                        self.address, type(error).__name__)
            return Standing()

    def failed(self) -> None:
        """Count one failure; the first one in a window starts it (one round trip)."""
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                # SET NX EX then INCR in one MULTI: the window starts once and INCR keeps its TTL,
                # so the key can never be left without an expiry (a lock-out for ever).
                pipe.set(self.key, 0, ex=WINDOW_SECONDS, nx=True)
                pipe.incr(self.key)
                pipe.execute()
        except redis.RedisError as error:
            log.warning("admin auth throttle: cannot count a failure of %s (%s)", self.address,
                        type(error).__name__)

    def succeeded(self, standing: Standing) -> None:
        """A right token clears the address's failures (no write when it had none)."""
        if not standing.failures:
            return
        try:
            self.redis.delete(self.key)
        except redis.RedisError as error:
            log.warning("admin auth throttle: cannot clear failures of %s (%s)", self.address,
                        type(error).__name__)


def for_request() -> AuthThrottle:
    """The throttle for the current request's client address, on the app's Redis."""
    runtime = current_app.extensions["gateway"]
    return AuthThrottle(runtime.redis, runtime.keys, request.remote_addr)
