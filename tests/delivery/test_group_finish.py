"""Attempts that finish together are recorded in one finish.lua call (group commit), each
exactly as if it had been written on its own, and each caller returns only once its own
attempt is in Redis. Real Redis throughout; the only stand-in is a gate that holds the first
write back, so that others finish while it is out."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from support.configs import engine_config, sink_table
from support.delivery import publish_tickets, shown
from support.plugins import PlainSinkPlugin

from gateway.delivery.group_finish import GroupFinish
from gateway.storage.layout import AttemptRecord
from gateway.storage.scripts import Finished, Scripts


@pytest.fixture
def runtime(make_runtime: Any, redis_url: str, tmp_path: Path) -> Any:
    sinks = [sink_table("a", "http://127.0.0.1:9/a"), sink_table("b", "http://127.0.0.1:9/b")]
    return make_runtime(engine_config(redis_url, tmp_path, sinks), plugins=[PlainSinkPlugin()])


def record(delivery_id: str, sink: str, status: str, threshold: int = 5) -> AttemptRecord:
    """One finish.lua record, as AttemptRunner builds it."""
    now = int(time.time() * 1000)
    return AttemptRecord(
        id=delivery_id, sink=sink, now_ms=now, attempt_json=f'{{"delivery_id":"{delivery_id}","status":"{status}"}}',
        status=status, attempts=1, round_attempts=1, next_attempt_at_ms=now + 5000 if status == "retrying" else None,
        last_status_code=200 if status == "delivered" else 500,
        last_error="" if status == "delivered" else "http_status: HTTP 500", retention_s=86400,
        circuit="success" if status == "delivered" else "failure", lane="", max_in_flight=10,
        failure_threshold=threshold, cooldown_ms=30_000,
        max_cooldown_ms=600_000, pause_reason="", hour=time.strftime("%Y%m%d%H", time.gmtime()), latency_bucket="50",
        stats_ttl_s=3600)


def claim_all(runtime: Any, sink: str) -> None:
    result = runtime.scripts.claim(sink, "test-token", 32, 100, 60_000, 0)
    assert result.status == "ok"


class HeldFirstWrite:
    """The real scripts, with the first finish.lua call held until ``release`` is set."""

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def finish(self, records: list[AttemptRecord]) -> list[Finished]:
        self.calls.append(len(records))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.scripts.finish(records)


def test_attempts_finishing_while_a_write_is_out_share_the_next_write(runtime):
    ids = publish_tickets(runtime, 6)
    a_ids = [i for i in ids if shown(runtime, i)["sink"] == "a"]
    claim_all(runtime, "a")
    held = HeldFirstWrite(runtime.scripts)
    group = GroupFinish(held.finish)
    results: dict[str, Finished] = {}

    def finish(delivery_id: str) -> None:
        results[delivery_id] = group(record(delivery_id, "a", "delivered"))

    first = threading.Thread(target=finish, args=(a_ids[0],))
    first.start()
    assert held.entered.wait(30)
    others = [threading.Thread(target=finish, args=(i,)) for i in a_ids[1:]]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 30
    while group.waiting < len(others):
        assert time.monotonic() < deadline, "the other finishes never queued up"
        time.sleep(0.01)
    assert not results  # nobody returns before its attempt is written
    held.release.set()
    for thread in [first, *others]:
        thread.join(30)

    assert held.calls == [1, len(others)]
    assert results == {i: Finished() for i in a_ids}  # each got its own answer: nothing changed
    for delivery_id in a_ids:
        found = shown(runtime, delivery_id)
        assert found["status"] == "delivered" and len(found["attempt_log"]) == 1
        assert runtime.redis.zscore(runtime.keys.inflight("a"), delivery_id) is None


def test_one_call_records_each_attempt_as_if_written_alone(runtime):
    ids = publish_tickets(runtime, 3)
    a_ids = [i for i in ids if shown(runtime, i)["sink"] == "a"]
    b_ids = [i for i in ids if shown(runtime, i)["sink"] == "b"]
    claim_all(runtime, "a")
    claim_all(runtime, "b")
    scripts = runtime.scripts
    # Two failures of "a" with a threshold of 2 open its circuit at the second; "b" is
    # unaffected by "a"'s streak and its success is recorded in the same call.
    finished = scripts.finish([record(a_ids[0], "a", "retrying", threshold=2),
                               record(b_ids[0], "b", "delivered", threshold=2),
                               record(a_ids[1], "a", "retrying", threshold=2)])
    assert [f.circuit for f in finished] == ["", "", "opened"]
    assert finished[0].open_until == 0 and finished[1].open_until == 0 and finished[2].open_until > 0
    assert finished[2].opened_at > 0 and [f.paused for f in finished] == [False, False, False]  # opened, not paused
    state = runtime.redis.hgetall(runtime.keys.sink_state("a"))
    assert state[b"failure_streak"] == b"2" and b"circuit_open_until" in state
    assert runtime.redis.hget(runtime.keys.sink_state("b"), "failure_streak") == b"0"
    assert shown(runtime, a_ids[1])["status"] == "retrying"
    assert shown(runtime, b_ids[0])["status"] == "delivered"


def test_a_failed_write_fails_every_attempt_it_carried(runtime):
    [delivery_id] = [i for i in publish_tickets(runtime, 1) if shown(runtime, i)["sink"] == "a"]
    claim_all(runtime, "a")

    def redis_gone(records: list[AttemptRecord]) -> list[Finished]:
        raise redis.ConnectionError("Redis went away")

    with pytest.raises(redis.ConnectionError):
        GroupFinish(redis_gone)(record(delivery_id, "a", "delivered"))
    # Not recorded: the in-flight lease stays, so the sweeper will put it back (redelivery).
    assert runtime.redis.zscore(runtime.keys.inflight("a"), delivery_id) is not None
    assert shown(runtime, delivery_id)["status"] == "pending"
