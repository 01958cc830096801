"""When to try a delivery again.

The schedule is a list of delays: retry *k* happens ``schedule[k-1]`` seconds after attempt
*k* (default [5, 300, 1800, 7200, 18000, 36000, 36000]: 8 attempts over about a day), each
delay scaled by a random factor in ``1 ± jitter`` so that a sink coming back is not hit by
every delivery at the same instant. When the destination says when to come back (the
sink's ``Outcome.not_before``, else the ``Retry-After`` header of any answer a sink chose to
retry), that replaces the delay, capped at ``delivery.max_retry_after``: plugins never parse
the header themselves. Past the end of the schedule the delivery has failed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from gateway.delivery.http_client import retry_after
from gateway.sinks import Outcome, Response

RETRYABLE_ERRORS = frozenset({"connect_error", "timeout", "tls_error", "too_large"})
"""Transport errors worth another try; the others (ssrf_refused, invalid_url,
invalid_request) would fail the same way every time."""

_random = random.SystemRandom()


def retry_delay(schedule: Sequence[float], round_attempts: int, jitter: float,
                rng: random.Random | None = None) -> float | None:
    """Seconds until the next attempt after ``round_attempts`` attempts (since the delivery
    was created or last replayed), jittered; None when the schedule is exhausted."""
    if round_attempts < 1 or round_attempts > len(schedule):
        return None
    delay = float(schedule[round_attempts - 1])
    if jitter:
        delay *= (rng or _random).uniform(1 - jitter, 1 + jitter)
    return max(delay, 0.0)


def not_before(outcome: Outcome, response: Response | None, now: datetime, cap: float) -> datetime | None:
    """The earliest next attempt the destination asked for, capped at ``cap`` seconds:
    the sink's ``Outcome.not_before``, else the response's ``Retry-After`` (whatever its
    status: the sink already judged the answer worth a retry)."""
    limit = now + timedelta(seconds=cap)
    if outcome.not_before is not None:
        return min(max(outcome.not_before, now), limit)
    if response is not None:
        return retry_after(response, cap=cap, now=now)
    return None
