"""What a claim (claim.lua) must never let through, at its edges: a paused sink's
deliveries, a delivery already being attempted (pushed twice onto the ready list), and one
attempt more than ``max_in_flight`` when the drainer asks for exactly one more than the room
left. Real drainer in the test process, real Redis, real HTTP sinks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.delivery import drain_queued, plain_runtime, publish_tickets, shown
from support.servers import Answer, SinkServer

from gateway.delivery import sink_state, wakeups


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer() as started:
        yield started


def test_a_paused_sinks_deliveries_wait_until_it_is_resumed(make_runtime, server):
    server.answer(Answer(410, b"gone"))  # the reference policy: 410 pauses the sink
    runtime = plain_runtime(make_runtime, server.url, max_in_flight=1)
    first, *waiting = publish_tickets(runtime, 3)
    # One drainer: the pause comes while it is still draining, so its next claim must stop.
    drain_queued(runtime)
    assert sink_state.sink_states(runtime)[0]["state"] == "paused"
    assert server.count() == 1 and shown(runtime, first)["status"] == "failed"
    assert [shown(runtime, i)["status"] for i in waiting] == ["pending", "pending"]
    wakeups.requeue(runtime, "retry", wake_sinks=["hook"])  # a wake-up does nothing either
    drain_queued(runtime)
    assert server.count() == 1

    sink_state.resume(runtime, "hook")
    drain_queued(runtime)
    assert [shown(runtime, i)["status"] for i in waiting] == ["delivered", "delivered"]
    assert server.count() == 3


def test_a_delivery_pushed_twice_is_attempted_once(make_runtime, server):
    runtime = plain_runtime(make_runtime, server.url)
    [delivery_id] = publish_tickets(runtime)
    # As when a retry's requeue races a replay: the id is on the ready list twice.
    runtime.redis.rpush(runtime.keys.ready("hook"), delivery_id)
    drain_queued(runtime)
    assert [r.headers["X-Webhook-Delivery"] for r in server.received] == [delivery_id]
    assert shown(runtime, delivery_id)["attempts"] == 1


@pytest.mark.parametrize(("cap", "concurrency"), [(1, 2), (2, 3), (3, 4)])
def test_the_in_flight_cap_holds_when_the_drainer_could_take_one_more(make_runtime, server, cap, concurrency):
    server.default = Answer(200, delay=0.6)
    runtime = plain_runtime(make_runtime, server.url, max_in_flight=cap)
    ids = publish_tickets(runtime, cap + 3)
    drain_queued(runtime, concurrency=concurrency)
    assert all(shown(runtime, i)["status"] == "delivered" for i in ids)
    # At most the cap at once (a test that needed all of them at once would fail on a slow,
    # loaded machine for no fault of the claim).
    assert 1 <= server.max_active <= cap
