"""An in-flight lease outlasts the sink's timeout: an attempt that may take up to ``timeout``
seconds is never taken for a dead worker's (and put back for a second attempt) while it
still runs. The lease is the sink's own timeout plus a margin, whatever the default is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.delivery import drain_queued, plain_runtime, publish_tickets, shown
from support.processes import wait_until
from support.servers import Answer, SinkServer

from gateway.delivery.attempt import INFLIGHT_MARGIN_MS

HOLD_S = 1.0
"""How long the destination takes to answer: long enough to read the lease meanwhile."""


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer(Answer(200, delay=HOLD_S)) as started:
        yield started


def lease_while_attempting(make_runtime: Any, server: SinkServer, **sink: Any) -> tuple[int, int, Any, str]:
    """Publish one delivery, attempt it in a thread, and read its in-flight lease (epoch ms)
    while the destination holds the request. Returns (lease end, time read, runtime, id)."""
    runtime = plain_runtime(make_runtime, server.url, delivery={"timeout": 5}, **sink)
    before = server.count()
    [delivery_id] = publish_tickets(runtime)
    drainer = threading.Thread(target=drain_queued, args=(runtime,), daemon=True)
    drainer.start()
    wait_until(lambda: server.count() == before + 1, what="the destination holding the attempt")
    lease = runtime.redis.zscore("gw:inflight:hook", delivery_id)
    read_at = int(time.time() * 1000)
    drainer.join(30)
    assert not drainer.is_alive()
    assert lease is not None, "the delivery being attempted holds no in-flight lease"
    return int(lease), read_at, runtime, delivery_id


def test_a_sink_with_a_40_s_timeout_gets_a_lease_longer_than_40_s(make_runtime: Any, server: SinkServer) -> None:
    lease, read_at, runtime, delivery_id = lease_while_attempting(make_runtime, server, timeout=40)
    # Claimed at most a few seconds before it was read: the lease ends past the timeout.
    assert lease - read_at > 40_000
    assert lease - read_at <= 40_000 + INFLIGHT_MARGIN_MS
    # The attempt was made once, and recorded.
    assert server.count() == 1
    assert shown(runtime, delivery_id)["status"] == "delivered" and shown(runtime, delivery_id)["attempts"] == 1


def test_the_lease_follows_the_sinks_own_timeout_not_the_default(make_runtime: Any, server: SinkServer) -> None:
    lease, read_at, _, _ = lease_while_attempting(make_runtime, server, timeout=120)
    assert 120_000 < lease - read_at <= 120_000 + INFLIGHT_MARGIN_MS
    # and one that does not set one gets the [delivery] default (5 s here).
    default_lease, default_read_at, _, _ = lease_while_attempting(make_runtime, server)
    assert 5_000 < default_lease - default_read_at <= 5_000 + INFLIGHT_MARGIN_MS
