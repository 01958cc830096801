"""Web processes SIGKILLed under load (issue 7, item 3).

A client POSTs tickets, each with its own Idempotency-Key, and sends a request that got
no answer again with the same key (what a careful client does when the connection drops).
Meanwhile gunicorn's worker processes are SIGKILLed at random moments (the master forks new
ones), and twice the whole web server is killed and started again. Then: no 5xx was ever
answered, every acknowledged ticket is stored and delivered, and no key ever produced two
tickets.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from support.configs import outage_config, write_config
from support.load import Load, wait_under_load
from support.processes import (
    KillableProcess,
    children_of,
    free_port,
    start_killable_web,
    start_killable_worker,
)

WORKER_KILLS = 10
SERVER_KILLS = 2

pytestmark = pytest.mark.slow


def test_killed_web_processes_lose_no_acknowledged_ticket(
    redis_url: str,
    redis_client: redis_lib.Redis,
    tmp_path: Path,
    logs: Path,
    procs: list[KillableProcess],
    destination: Any,
) -> None:
    rng = random.Random()
    receiver = destination()
    config = write_config(tmp_path / "gateway.toml", outage_config(redis_url, tmp_path / "data", receiver.url))
    port = free_port()
    web = start_killable_web(config, logs / "web.log", port, web_workers=2)
    procs.append(web)
    procs.append(start_killable_worker(config, logs / "worker.log"))

    killed_workers = 0
    with Load(f"http://127.0.0.1:{port}", rate=40, retry_unanswered=True) as load:
        wait_under_load(lambda: load.acknowledged(), "the first acknowledged ticket")
        plan = ["worker"] * WORKER_KILLS + ["server"] * SERVER_KILLS
        rng.shuffle(plan)
        for n, what in enumerate(plan):
            time.sleep(rng.uniform(0.3, 2.0))
            if what == "worker":
                pids = children_of(web.pid)
                assert pids, f"gunicorn has no workers:\n{web.output()}"
                pid = rng.choice(pids)
                os.kill(pid, signal.SIGKILL)
                killed_workers += 1
            else:
                web.kill()
                web = start_killable_web(config, logs / f"web-restart-{n}.log", port, web_workers=2)
                procs.append(web)
        time.sleep(2)

    statuses = load.statuses()
    assert set(statuses) <= {0, 200, 201}, statuses  # 0: no answer (connection dropped), then retried
    assert statuses.get(0, 0) > 0, "no request was ever cut off: the kills did not hit anything"

    # One ticket per key, whatever happened on the wire.
    per_key: dict[str, set[str]] = {}
    for outcome in load.outcomes:
        if outcome.ticket_id:
            per_key.setdefault(outcome.key, set()).add(outcome.ticket_id)
    assert {k: v for k, v in per_key.items() if len(v) != 1} == {}
    acknowledged = load.acknowledged()
    unanswered_keys = {o.key for o in load.outcomes} - set(acknowledged)
    assert len(unanswered_keys) <= 1  # at most the request cut off when the load stopped

    # Every acknowledged ticket is stored...
    stored = {i.decode() for i in redis_client.zrange("gw:tickets", 0, -1)}
    missing = set(acknowledged.values()) - stored
    assert not missing, f"{len(missing)} acknowledged tickets are not in Redis"
    assert len(stored) - len(acknowledged) <= len(unanswered_keys)  # and none was created twice
    for ticket_id in acknowledged.values():
        assert json.loads(redis_client.get(f"gw:ticket:{ticket_id}"))["id"] == ticket_id
    # ...and delivered.
    wanted = set(acknowledged.values())
    wait_under_load(
        lambda: wanted <= receiver.delivered_tickets(),
        "every acknowledged ticket to be delivered",
        timeout=120,
    )
    replays = statuses.get(200, 0)
    print(
        f"\n{len(acknowledged)} tickets, {killed_workers} gunicorn workers, {SERVER_KILLS} servers killed, "
        f"{statuses.get(0, 0)} requests cut off and retried, {replays} answered by an idempotent replay"
    )
