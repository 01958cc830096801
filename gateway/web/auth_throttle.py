"""The credential throttle (:mod:`gateway.storage.throttle`) for the current Flask request.

Shared by the console's sign-in form, the admin API's bearer-token check and plugins'
credential checks (:meth:`gateway.SinkContext.check_credential`), so one address (one
IPv6 /64) gets the same number of guesses whichever door it knocks on: 10 wrong in a
15-minute window, then 429 until the window ends.
"""

from __future__ import annotations

from flask import current_app, request

from gateway.storage.throttle import CREDENTIALS, FailureThrottle, Standing, credential_throttle

FAILURE_LIMIT = CREDENTIALS.failures
WINDOW_SECONDS = CREDENTIALS.window_s

__all__ = ["FAILURE_LIMIT", "WINDOW_SECONDS", "Standing", "for_request"]


def for_request() -> FailureThrottle:
    """The credential throttle of the current request's client address, on the app's Redis."""
    runtime = current_app.extensions["gateway"]
    return credential_throttle(runtime.redis, runtime.keys, request.remote_addr)
