"""A sweep (sweep.lua, through Scripts.sweep) puts back exactly the in-flight leases that
ended: all of them, counted, in their order, and none that is still running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.delivery import plain_runtime, publish_tickets
from support.servers import SinkServer


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer() as started:
        yield started


def test_every_expired_lease_comes_back_counted_and_a_live_one_stays(make_runtime: Any, server: SinkServer) -> None:
    runtime = plain_runtime(make_runtime, server.url)
    first, second, running, queued = publish_tickets(runtime, 4)
    keys, now = runtime.keys, int(time.time() * 1000)
    # As if workers claimed three and two of them died: their leases ran out; the third runs on.
    runtime.redis.lrem(keys.ready("hook"), 0, first)
    runtime.redis.lrem(keys.ready("hook"), 0, second)
    runtime.redis.lrem(keys.ready("hook"), 0, running)
    runtime.redis.zadd(keys.inflight("hook"), {first: now - 5000, second: now - 1, running: now + 60_000})
    # The sink's drainers are gone too (their leases lapsed): ready work and no drainer.
    runtime.redis.delete(keys.drainers("hook"))
    # One pass of sweep.lua, as from a process that drains the sink already: it starts no
    # second drainer of its own (and none takes the work before this test looks).
    swept = runtime.scripts.sweep(["hook"], ["hook"])
    assert swept.recovered == 2 and swept.starts == [] and swept.unconfigured == []
    ready = [i.decode() for i in runtime.redis.lrange(keys.ready("hook"), 0, -1)]
    assert ready[:2] == [first, second] and queued in ready and running not in ready
    assert [i.decode() for i in runtime.redis.zrange(keys.inflight("hook"), 0, -1)] == [running]


def test_a_sweep_wakes_a_drainer_for_ready_work_without_one_unless_this_process_drains_it(
        make_runtime: Any, server: SinkServer) -> None:
    runtime = plain_runtime(make_runtime, server.url)
    publish_tickets(runtime, 3)
    runtime.redis.delete(runtime.keys.drainers("hook"), runtime.queue.key)  # as if the wake-up was lost
    assert runtime.scripts.sweep(["hook"], ["hook"]).starts == []
    [(sink, token)] = runtime.scripts.sweep(["hook"], []).starts
    assert sink == "hook" and runtime.redis.zscore(runtime.keys.drainers("hook"), token) is not None
    # Now a drainer holds a live lease: the next pass of another process adds none.
    assert runtime.scripts.sweep(["hook"], []).starts == []
