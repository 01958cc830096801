"""Redis killed under load, then started again from its append-only file (issue 7, item 2).

The test runs its own Redis (the embedded redis-server with AOF on, as ``gateway run``
does), a gunicorn-served gateway and a worker on it, and a client POSTing tickets. Redis
is SIGKILLed mid-load (three times): the receive endpoint answers 503 with Retry-After, never a 500 and
never a 201 for something it did not store. Redis is started again on the same socket and
data directory: every ticket that got a 201 is there, and its delivery completes, also
where that takes a retry (which needs rq's scheduler to have survived the outage).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.configs import outage_config, write_config
from support.delivery import engine_state
from support.load import Load, wait_under_load
from support.processes import KillableProcess, free_port, start_killable_web, start_killable_worker

from gateway.storage.connection import EmbeddedRedis, connect

OUTAGES = 3

pytestmark = pytest.mark.slow


def answered(load: Load, status: int, count: int) -> Callable[[], bool]:
    """True once ``count`` more requests than now were answered with ``status``."""
    start = len(load.outcomes)
    return lambda: sum(o.status == status for o in load.outcomes[start:]) >= count


@pytest.fixture
def own_redis(tmp_path: Path) -> Any:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_killed_mid_load_then_restarted_from_its_aof(
    own_redis: EmbeddedRedis, tmp_path: Path, logs: Path, procs: list[KillableProcess], destination: Any
) -> None:
    receiver = destination()
    config = write_config(
        tmp_path / "gateway.toml", outage_config(own_redis.url, tmp_path / "data", receiver.url)
    )
    port = free_port()
    procs.append(start_killable_web(config, logs / "web.log", port, web_workers=2))
    worker = start_killable_worker(config, logs / "worker.log")
    procs.append(worker)

    with Load(f"http://127.0.0.1:{port}", rate=25) as load:
        wait_under_load(lambda: receiver.delivered_tickets(), "the first delivery")
        for _ in range(OUTAGES):  # several, so Redis dies at different points of the worker's loop
            assert own_redis.process is not None
            own_redis.process.kill()  # SIGKILL: no chance to flush anything on the way out
            own_redis.process.wait()
            wait_under_load(answered(load, 503, 20), "20 refusals while Redis is down")
            own_redis.start()  # same socket, same data directory: the AOF is replayed
            # The next answers are failures: those deliveries need retries, which only rq's
            # scheduler fires, so the scheduler must have survived the outage too.
            receiver.script((500, {}), (500, {}))
            wait_under_load(answered(load, 201, 20), "20 tickets after Redis is back")

    statuses = load.statuses()
    assert set(statuses) <= {201, 503}, {
        o.status: o.error for o in load.outcomes if o.status not in (201, 503)
    }
    refused = [o for o in load.outcomes if o.status == 503]
    assert refused, "Redis was down but nothing was refused"
    for outcome in refused:
        assert outcome.retry_after and int(outcome.retry_after) > 0
        assert '"storage_unavailable"' in (outcome.error or "")

    # Every 201 is in the restarted Redis: the AOF kept what was acknowledged.
    client = connect(own_redis.url)
    acknowledged = set(load.acknowledged().values())
    stored = {i.decode() for i in client.zrange("gw:tickets", 0, -1)}
    assert acknowledged - stored == set(), f"{len(acknowledged - stored)} acknowledged tickets lost"
    for ticket_id in acknowledged:
        ticket = json.loads(client.get(f"gw:ticket:{ticket_id}"))
        assert ticket["id"] == ticket_id and ticket["ticket_number"].startswith("TKT-")
    # A 503 means nothing was stored (barring the instant of a kill, when Redis may have
    # written a ticket it could not confirm: a client retrying with its Idempotency-Key
    # would then get that ticket back).
    assert len(stored - acknowledged) <= OUTAGES, stored - acknowledged
    # Each stored ticket has its event and its delivery: nothing half-written.
    deliveries = {k for k in client.scan_iter("gw:delivery:dlv_*") if not k.endswith(b":attempts")}
    assert len(deliveries) == len(stored)
    assert client.zcard("gw:events") == len(stored)

    # And every acknowledged ticket's delivery completes once Redis is back.
    try:
        wait_under_load(
            lambda: acknowledged <= receiver.delivered_tickets(),
            "every acknowledged ticket to be delivered",
            timeout=120,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{engine_state(client)}\nworker:\n{worker.output()[-4000:]}") from None
    assert worker.alive(), f"the worker died with Redis:\n{worker.output()[-3000:]}"
    retried = [a for a in receiver.snapshot() if a.status == 500]
    assert len(retried) == 2 * OUTAGES  # each then delivered on a retry (checked just above)
    print(
        f"\n{len(acknowledged)} tickets acknowledged, {len(refused)} requests refused with 503 while Redis "
        f"was down, {len(stored - acknowledged)} stored without a 201"
    )


def test_readiness_follows_redis(
    own_redis: EmbeddedRedis, tmp_path: Path, logs: Path, procs: list[KillableProcess], destination: Any
) -> None:
    """/readyz tells a load balancer to stop sending while Redis is away, /healthz does not."""
    import requests

    config = write_config(
        tmp_path / "gateway.toml", outage_config(own_redis.url, tmp_path / "data", destination().url)
    )
    port = free_port()
    procs.append(start_killable_web(config, logs / "web.log", port, web_workers=1))
    base = f"http://127.0.0.1:{port}"
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 200
    own_redis.stop()
    assert requests.get(f"{base}/readyz", timeout=10).status_code == 503
    assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
    own_redis.start()
    wait_under_load(lambda: requests.get(f"{base}/readyz", timeout=10).status_code == 200, "/readyz after restart")
