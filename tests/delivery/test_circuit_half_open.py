"""The circuit breaker's half-open step with room for more than one delivery at a time: when
the cool-down ends, exactly one probe goes out however many deliveries wait and however
large the sink's ``max_in_flight``; a failed probe opens the circuit again for twice as
long (up to ``circuit_max_cooldown``); a good one closes it and the rest go out.

Driven in the test process (the real drainer, real Redis, a real HTTP sink), asserting on
what the sink state API and the delivery log show."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support.delivery import drain_queued, plain_runtime, publish_tickets, shown
from support.processes import wait_until
from support.servers import Answer, SinkServer

from gateway.delivery import sink_state, wakeups

COOLDOWN_S = 2.0
"""Long enough that a drain under heavy load ends before the circuit it re-opened is due again."""


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer(Answer(500, b"down")) as started:
        yield started


def build(make_runtime: Any, server: SinkServer, max_cooldown: float = 60) -> Any:
    return plain_runtime(make_runtime, server.url, retry_schedule=[], failure_threshold=2, max_in_flight=5,
                         delivery={"circuit_cooldown": COOLDOWN_S, "circuit_max_cooldown": max_cooldown})


@pytest.fixture
def runtime(make_runtime: Any, server: SinkServer) -> Any:
    return build(make_runtime, server)


def state(runtime: Any) -> dict[str, Any]:
    return sink_state.sink_states(runtime, ["hook"])[0]


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def open_the_circuit(runtime: Any, server: SinkServer) -> list[str]:
    """Two failures open it; then five deliveries wait behind it. Returns their ids."""
    failed = publish_tickets(runtime, 2)
    drain_queued(runtime)
    assert server.count() == 2 and state(runtime)["state"] == "circuit_open"
    # Opened by the second failure, for the plain cool-down.
    opened_by = max(ms(shown(runtime, i)["updated_at"]) for i in failed)
    assert ms(state(runtime)["circuit_open_until"]) - opened_by == COOLDOWN_S * 1000
    waiting = publish_tickets(runtime, 5)
    assert server.count() == 2 and state(runtime)["counts"]["queued"] == 5
    return waiting


def after_cooldown(runtime: Any) -> None:
    """Wait for the cool-down to end, then wake a drainer (what the scheduled wake-up job
    of a worker would do)."""
    wait_until(lambda: state(runtime)["state"] == "half_open", what="cool-down over")
    wakeups.requeue(runtime, "retry", wake_sinks=["hook"])


def test_one_probe_goes_out_when_the_cool_down_ends_and_its_failure_doubles_the_cool_down(runtime, server):
    waiting = open_the_circuit(runtime, server)
    after_cooldown(runtime)
    drain_queued(runtime)

    # One probe, not a batch of max_in_flight: the destination saw one more request...
    assert server.count() == 3
    deliveries = [shown(runtime, i) for i in waiting]
    probed = [d for d in deliveries if d["attempts"] == 1]
    assert len(probed) == 1, deliveries
    assert [d["status"] for d in deliveries if d["attempts"] == 0] == ["pending"] * 4
    # ... and its failure opened the circuit again, for twice the cool-down, counted from
    # when the probe's attempt was recorded.
    [probe] = probed
    now = state(runtime)
    assert now["state"] == "circuit_open" and now["failure_streak"] == 3
    assert now["counts"]["last_24h"] == {"delivered": 0, "retrying": 0, "failed": 3}
    assert now["counts"]["queued"] == 4 and now["counts"]["in_flight"] == 0
    assert ms(now["circuit_open_until"]) - ms(probe["updated_at"]) == 2 * COOLDOWN_S * 1000

    # The next failed probe doubles it again.
    after_cooldown(runtime)
    drain_queued(runtime)
    assert server.count() == 4
    second = [shown(runtime, i) for i in waiting if shown(runtime, i)["attempts"] == 1 and i != probe["id"]]
    assert len(second) == 1
    assert ms(state(runtime)["circuit_open_until"]) - ms(second[0]["updated_at"]) == 4 * COOLDOWN_S * 1000


def test_a_good_probe_closes_the_circuit_and_lets_the_rest_through(runtime, server):
    waiting = open_the_circuit(runtime, server)
    server.default = Answer(200)
    after_cooldown(runtime)
    drain_queued(runtime)

    assert server.count() == 2 + 5
    assert all(shown(runtime, i)["status"] == "delivered" for i in waiting)
    closed = state(runtime)
    assert closed["state"] == "ok" and closed["failure_streak"] == 0 and closed["circuit_open_until"] is None


def test_the_cool_down_grows_no_further_than_circuit_max_cooldown(make_runtime, server):
    runtime = build(make_runtime, server, max_cooldown=3)
    waiting = open_the_circuit(runtime, server)
    after_cooldown(runtime)
    drain_queued(runtime)
    [probe] = [d for d in (shown(runtime, i) for i in waiting) if d["attempts"] == 1]
    assert ms(state(runtime)["circuit_open_until"]) - ms(probe["updated_at"]) == 3000
