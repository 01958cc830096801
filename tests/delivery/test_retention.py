"""What the engine keeps, and for how long (docs/reliability.md, "Retention"): a delivery
and its attempt log expire ``retention_days`` after it ended (delivered or failed); one that
is still retrying never expires; the per-sink hourly counters last 26 hours. Also: a
sink's ready list is first in, first out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.delivery import drain_queued, plain_runtime, publish_tickets, shown
from support.servers import Answer, SinkServer

RETENTION_DAYS = 2


@pytest.fixture
def server() -> Iterator[SinkServer]:
    with SinkServer() as started:
        yield started


def build(make_runtime: Any, server: SinkServer, **sink: Any) -> Any:
    return plain_runtime(make_runtime, server.url, gateway={"retention_days": RETENTION_DAYS}, **sink)


def ttl(runtime: Any, key: str) -> int:
    return int(runtime.redis.ttl(key))


def test_ended_deliveries_expire_after_the_retention_and_retrying_ones_never(make_runtime, server):
    server.answer(Answer(500), Answer(500))  # the first delivery fails for good, the second will retry
    runtime = build(make_runtime, server, retry_schedule=[])
    [failed] = publish_tickets(runtime)
    drain_queued(runtime)
    retry_runtime = build(make_runtime, server, retry_schedule=[600])
    [retrying] = publish_tickets(retry_runtime)
    drain_queued(retry_runtime)
    [delivered] = publish_tickets(runtime)
    drain_queued(runtime)

    assert [shown(runtime, i)["status"] for i in (failed, retrying, delivered)] == ["failed", "retrying", "delivered"]
    keys = runtime.keys
    for ended in (failed, delivered):
        for key in (keys.delivery(ended), keys.attempts(ended)):
            assert RETENTION_DAYS * 86400 - 60 < ttl(runtime, key) <= RETENTION_DAYS * 86400, key
    assert ttl(runtime, keys.delivery(retrying)) == -1 and ttl(runtime, keys.attempts(retrying)) == -1
    [stats] = runtime.redis.keys("gw:sink:hook:stats:*")
    assert 26 * 3600 - 60 < ttl(runtime, stats.decode()) <= 26 * 3600


def test_deliveries_go_out_in_the_order_they_were_published(make_runtime, server):
    runtime = build(make_runtime, server, max_in_flight=1)
    ids = publish_tickets(runtime, 5)
    drain_queued(runtime, concurrency=1)
    assert [r.headers["X-Webhook-Delivery"] for r in server.received] == ids
