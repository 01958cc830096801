"""Retry timing: the schedule with its jitter, Retry-After, and rq's whole seconds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import DEFAULT_RETRY_SCHEDULE
from gateway.delivery.retry import not_before, retry_delay
from gateway.delivery.wakeups import rq_schedule_time
from gateway.sinks import Outcome, Response

NOW = datetime(2026, 1, 15, 10, 30, 0, tzinfo=UTC)


@given(st.integers(min_value=1, max_value=len(DEFAULT_RETRY_SCHEDULE)), st.floats(min_value=0, max_value=1))
def test_delay_is_the_schedule_slot_within_the_jitter(attempts, jitter):
    base = DEFAULT_RETRY_SCHEDULE[attempts - 1]
    delay = retry_delay(DEFAULT_RETRY_SCHEDULE, attempts, jitter, random.Random(attempts))
    assert delay is not None
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_jitter_spreads_retries():
    delays = {retry_delay([100], 1, 0.2, random.Random(seed)) for seed in range(20)}
    assert len(delays) > 1 and all(80 <= d <= 120 for d in delays)


def test_the_schedule_runs_out():
    assert retry_delay([5, 300], 2, 0) == 300
    assert retry_delay([5, 300], 3, 0) is None
    assert retry_delay([], 1, 0) is None


def response(status: int, **headers: str) -> Response:
    return Response(status, headers, b"")


@pytest.mark.parametrize(("status", "header", "expected"), [
    (429, "7", NOW + timedelta(seconds=7)),
    (503, "Thu, 15 Jan 2026 10:31:00 GMT", NOW + timedelta(seconds=60)),
    (429, "86400", NOW + timedelta(seconds=3600)),  # capped
    (429, "soon", None),
    (500, "7", NOW + timedelta(seconds=7)),  # any answer the sink retries: plugins never parse it
    (502, "", None),
])
def test_retry_after(status, header, expected):
    assert not_before(Outcome.retry("x"), response(status, **{"Retry-After": header}), NOW, 3600) == expected


def test_a_sinks_not_before_wins_and_is_capped():
    asked = Outcome.retry("slow down", not_before=NOW + timedelta(hours=5))
    assert not_before(asked, response(429, **{"Retry-After": "1"}), NOW, 600) == NOW + timedelta(seconds=600)


def test_rq_times_are_rounded_up_to_the_second():
    assert rq_schedule_time(NOW + timedelta(milliseconds=1)) == NOW + timedelta(seconds=1)
    assert rq_schedule_time(NOW) == NOW


def test_no_delay_before_any_attempt_and_a_zero_delay_stays_zero():
    assert retry_delay([5, 300], 0, 0) is None
    assert retry_delay([5, 300], -1, 0) is None
    assert retry_delay([0, 300], 1, 0) == 0
    assert retry_delay([0, 300], 1, 0.5, random.Random(1)) == 0


def test_a_not_before_in_the_past_means_now_and_without_one_nothing_is_asked():
    assert not_before(Outcome.retry("x", not_before=NOW - timedelta(minutes=5)), None, NOW, 600) == NOW
    assert not_before(Outcome.retry("x"), None, NOW, 600) is None
    # The sink's own time, within the cap, is taken as it is.
    asked = Outcome.retry("x", not_before=NOW + timedelta(seconds=90))
    assert not_before(asked, response(429, **{"Retry-After": "5"}), NOW, 600) == NOW + timedelta(seconds=90)


def test_the_jitter_comes_from_the_random_source_given():
    # A seeded source gives the same delay every time (what the bench and tests rely on).
    assert retry_delay([100], 1, 0.2, random.Random(7)) == retry_delay([100], 1, 0.2, random.Random(7))
    assert retry_delay([100], 1, 0.2, random.Random(7)) == 100 * random.Random(7).uniform(0.8, 1.2)
