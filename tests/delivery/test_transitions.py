"""finish.lua reports each transition of a sink (or of a fan-out sink's target) to exactly
one attempt, which is what lets that attempt's process alone publish the system event:
opened once, a failed probe's re-opening as "reopened" (the same outage), closed once,
paused once; and it counts failed deliveries for the sweeper's failure summaries, which
are claimed once per window. Real Redis, the real scripts, called as the worker calls them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table
from support.plugins import PlainSinkPlugin

from gateway.storage.layout import AttemptRecord


@pytest.fixture
def runtime(make_runtime: Any, redis_url: str, tmp_path: Path) -> Any:
    return make_runtime(engine_config(redis_url, tmp_path, [sink_table("a", "http://127.0.0.1:9/a")]),
                        plugins=[PlainSinkPlugin()])


def attempt(status: str, now: int | None = None, lane: str = "", pause: str = "", n: int = 0) -> AttemptRecord:
    """A finished attempt of sink "a" (its delivery need not exist: the sink's state is what
    these tests look at). Threshold 2, cool-down 1 s."""
    now = now if now is not None else int(time.time() * 1000)
    failed = status == "failed"
    return AttemptRecord(
        id=f"dlv_{n}", sink="a", now_ms=now, attempt_json="{}", status=status, attempts=1, round_attempts=1,
        next_attempt_at_ms=None, last_status_code=200 if status == "delivered" else 503,
        last_error="" if status == "delivered" else "http_status: HTTP 503", retention_s=3600,
        circuit="success" if status == "delivered" else "failure", lane=lane, max_in_flight=10,
        failure_threshold=2, cooldown_ms=1000, max_cooldown_ms=4000, pause_reason=pause,
        hour=time.strftime("%Y%m%d%H", time.gmtime()), stats_ttl_s=3600,
        failure_json=json.dumps({"id": f"dlv_{n}", "event": "ticket.created"}) if failed else "")


@pytest.mark.parametrize("lane", ["", "sub_1"])
def test_each_circuit_transition_is_reported_once(runtime, lane):
    finish = runtime.scripts.finish
    now = int(time.time() * 1000)
    # Four failures finishing together: the second opens the circuit, the others say nothing.
    first = finish([attempt("retrying", now, lane, n=i) for i in range(4)])
    assert [f.circuit for f in first] == ["", "opened", "", ""]
    assert first[1].opened_at == now and first[1].open_until == now + 1000
    # The probe, after the cool-down, fails: re-opened for twice as long, the same outage.
    [probe] = finish([attempt("retrying", now + 1500, lane)])
    assert probe.circuit == "reopened" and probe.open_until == now + 1500 + 2000
    # The next probe succeeds: closed once, with when the outage began; then nothing.
    closed = finish([attempt("delivered", now + 4000, lane), attempt("delivered", now + 4001, lane)])
    assert [f.circuit for f in closed] == ["closed", ""] and closed[0].opened_at == now


def test_a_pause_is_reported_once(runtime):
    finish = runtime.scripts.finish
    paused = finish([attempt("failed", pause="HTTP 410 Gone", n=1), attempt("failed", pause="HTTP 410 Gone", n=2)])
    assert [f.paused for f in paused] == [True, False]


def test_failures_are_claimed_once_per_window_and_counted_exactly_once(runtime):
    scripts = runtime.scripts
    scripts.finish([attempt("failed", n=i) for i in range(3)] + [attempt("delivered", n=9)])
    [summary] = scripts.failure_summaries(window_ms=60_000)
    assert (summary.sink, summary.count, summary.last) == ("a", 3, {"id": "dlv_2", "event": "ticket.created"})
    assert scripts.failure_summaries(window_ms=60_000) == []  # nothing new
    scripts.finish([attempt("failed", n=i) for i in range(3, 5)])
    assert scripts.failure_summaries(window_ms=60_000) == []  # counted, but the window holds them
    runtime.redis.delete(runtime.keys.failure_summary("a"))  # the window ends
    [later] = scripts.failure_summaries(window_ms=60_000)
    assert dataclasses.astuple(later)[:2] == ("a", 2)
