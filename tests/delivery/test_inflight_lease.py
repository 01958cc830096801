"""An in-flight lease outlasts the sink's timeout: an attempt that may take up to ``timeout``
seconds is never taken for a dead worker's (and put back for a second attempt) while it
still runs. The lease is the sink's own timeout plus a margin, whatever the default is."""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass
class Lease:
    """A delivery's in-flight lease (epoch ms), read while its attempt was running, between
    ``published`` (before the claim) and ``read`` (after it)."""

    ends: int
    published: int
    read: int
    runtime: Any
    delivery_id: str

    def check(self, timeout_ms: int) -> None:
        # The claim came between the two clock readings, and the lease is claim + timeout +
        # margin: bounds that hold however slowly a loaded machine got from one to the other.
        assert self.ends - self.published >= timeout_ms + INFLIGHT_MARGIN_MS
        assert self.ends - self.read <= timeout_ms + INFLIGHT_MARGIN_MS


def lease_while_attempting(make_runtime: Any, server: SinkServer, **sink: Any) -> Lease:
    """Publish one delivery, attempt it in a thread, and read its in-flight lease while the
    destination holds the request."""
    runtime = plain_runtime(make_runtime, server.url, delivery={"timeout": 5}, **sink)
    before = server.count()
    published = int(time.time() * 1000)
    [delivery_id] = publish_tickets(runtime)
    drainer = threading.Thread(target=drain_queued, args=(runtime,), daemon=True)
    drainer.start()
    wait_until(lambda: server.count() == before + 1, what="the destination holding the attempt")
    lease = runtime.redis.zscore("gw:inflight:hook", delivery_id)
    read = int(time.time() * 1000)
    drainer.join(30)
    assert not drainer.is_alive()
    assert lease is not None, "the delivery being attempted holds no in-flight lease"
    return Lease(int(lease), published, read, runtime, delivery_id)


def test_a_sink_with_a_40_s_timeout_gets_a_lease_longer_than_40_s(make_runtime: Any, server: SinkServer) -> None:
    lease = lease_while_attempting(make_runtime, server, timeout=40)
    assert lease.ends - lease.published > 40_000
    lease.check(40_000)
    # The attempt was made once, and recorded.
    assert server.count() == 1
    found = shown(lease.runtime, lease.delivery_id)
    assert found["status"] == "delivered" and found["attempts"] == 1


def test_the_lease_follows_the_sinks_own_timeout_not_the_default(make_runtime: Any, server: SinkServer) -> None:
    lease_while_attempting(make_runtime, server, timeout=120).check(120_000)
    # and one that does not set one gets the [delivery] default (5 s here).
    lease_while_attempting(make_runtime, server).check(5_000)
