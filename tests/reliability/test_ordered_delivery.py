"""Ordered delivery per ticket across processes and failures (issue #18).

Second test, the issue's "done when" as a consumer: a receiver down for a minute while
tickets are created and resolved through the HTTP API gets, once it is back, every ticket's
events, each ticket's in the order they happened.

First test:

50 tickets x 4 events (created, updated, escalated, resolved) are published, interleaved,
to a sink with ``ordering = "per_ticket"``; a receiver answers 500 to a third of the requests
at random and takes a while to answer, so kills land mid-attempt. Two ``gateway worker``
processes deliver; two of them are SIGKILLed during the run (and replaced), and Redis itself
is SIGKILLed once and started again from its append-only file. Then: every event reached
the receiver and the delivery log says delivered (nothing lost), and for every ticket each
event's requests -- retries and redeliveries included -- all came before the next event's
first one: arrival order = publish order.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from support.configs import OUTAGE_ADMIN_TOKEN, outage_config, write_config
from support.delivery import engine_state, wait_until_logged_delivered
from support.load import RECEIVE, wait_under_load
from support.processes import KillableProcess, free_port, start_killable_web, start_killable_worker

from gateway.events import Event
from gateway.publish.publisher import publish
from gateway.runtime import Runtime
from gateway.storage.connection import EmbeddedRedis, connect

TICKETS = 50
EVENTS = ("ticket.created", "ticket.updated", "ticket.escalated", "ticket.resolved")

pytestmark = pytest.mark.slow


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


class Publisher:
    """Publishes every ticket's events in order, one round of events at a time (so the
    tickets interleave), through the gateway's publisher; a publish that fails because
    Redis is down wrote nothing and is tried again, as a careful caller would."""

    def __init__(self, runtime: Runtime, pace: float) -> None:
        self.runtime = runtime
        self.pace = pace
        self.published: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self._run, name="publisher", daemon=True)

    def _run(self) -> None:
        for name in EVENTS:
            for n in range(TICKETS):
                event = Event.new(name, {"ticket": {"id": f"ticket-{n:02d}", "subject": f"Ticket {n}"}})
                while True:
                    try:
                        publish(self.runtime, event)
                        break
                    except redis_lib.RedisError:
                        time.sleep(0.2)
                self.published.append((f"ticket-{n:02d}", name))
                time.sleep(self.pace)


def test_order_per_ticket_survives_killed_workers_a_redis_restart_and_random_500s(
    own_redis: EmbeddedRedis, tmp_path: Path, logs: Path, procs: list[KillableProcess], destination: Any
) -> None:
    receiver = destination(delay=(0.05, 0.3), failure_rate=0.33)
    doc = outage_config(own_redis.url, tmp_path / "data", receiver.url, max_in_flight=20)
    doc["sinks"][0].update(ordering="per_ticket", events=list(EVENTS))
    config = write_config(tmp_path / "gateway.toml", doc)
    runtime = Runtime.from_config(config, start_embedded=False)
    workers = [start_killable_worker(config, logs / f"worker-{i}.log") for i in range(2)]
    procs.extend(workers)
    client = connect(own_redis.url)

    publisher = Publisher(runtime, pace=0.03)
    publisher.thread.start()
    wait_under_load(lambda: len(receiver.snapshot()) >= 20, "the first deliveries")
    for n in range(2):  # two workers SIGKILLed mid-run (with attempts in flight), replaced
        wait_under_load(lambda: client.zcard("gw:inflight:rec") > 0, "attempts in flight")
        workers[n].kill()
        workers[n] = start_killable_worker(config, logs / f"worker-restart-{n}.log")
        procs.append(workers[n])
        time.sleep(2)
    assert own_redis.process is not None
    own_redis.process.kill()  # SIGKILL: Redis comes back from its append-only file
    own_redis.process.wait()
    time.sleep(1)
    own_redis.start()
    publisher.thread.join(120)
    assert len(publisher.published) == TICKETS * len(EVENTS)

    try:
        wait_until_logged_delivered(client, TICKETS * len(EVENTS), timeout=240)
    except AssertionError:
        raise AssertionError(f"not all delivered: {engine_state(client)}") from None

    arrivals = receiver.snapshot()
    per_ticket: dict[str, list[str]] = defaultdict(list)
    delivered: set[tuple[str, str]] = set()
    for arrival in arrivals:
        per_ticket[arrival.ticket_id].append(arrival.event)
        if 200 <= arrival.status < 300:
            delivered.add((arrival.ticket_id, arrival.event))
    # Nothing lost: every event of every ticket was answered 2xx at least once.
    assert delivered == set(publisher.published)
    # In order: each event's requests (retries, redeliveries after a kill) all before the next's.
    for ticket_id, events in per_ticket.items():
        collapsed = [name for i, name in enumerate(events) if i == 0 or events[i - 1] != name]
        assert collapsed == list(EVENTS), f"{ticket_id}: {events}"
    retried = sum(1 for a in arrivals if a.status == 500)
    repeats = len(arrivals) - len(delivered) - retried
    assert retried > 0
    print(f"\n{len(arrivals)} requests for {len(delivered)} events of {TICKETS} tickets: {retried} answered 500, "
          f"{repeats} redelivered after a kill; every ticket in publish order")


OUTAGE_S = 60.0
OUTAGE_TICKETS = 20


def test_a_receiver_down_for_a_minute_gets_every_tickets_events_in_order_once_back(
    redis_url: str, redis_client: redis_lib.Redis, tmp_path: Path, logs: Path, procs: list[KillableProcess],
    destination: Any,
) -> None:
    receiver = destination()
    doc = outage_config(redis_url, tmp_path / "data", receiver.url, retry_schedule=[2, 4, 8, 16, 30, 30, 30, 30],
                      failure_threshold=5, circuit_cooldown=5, circuit_max_cooldown=20)
    doc["sinks"][0].update(ordering="per_ticket", events=["ticket.created", "ticket.updated", "ticket.resolved"])
    config = write_config(tmp_path / "gateway.toml", doc)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {OUTAGE_ADMIN_TOKEN}"}
    procs.append(start_killable_web(config, logs / "web.log", port))
    procs.append(start_killable_worker(config, logs / "worker.log"))

    receiver.go_down()
    started = time.monotonic()
    tickets = []
    for n in range(OUTAGE_TICKETS):
        created = requests.post(base + RECEIVE, timeout=10, json={"event": "ticket.create", "data": {
            "subject": f"Outage {n}", "message": "m", "customer_email": f"o{n}@example.com"}})
        assert created.status_code == 201, created.text
        ticket_id = created.json()["ticket"]["id"]
        for status in ("open", "resolved"):  # ticket.updated, then ticket.updated + ticket.resolved
            patched = requests.patch(f"{base}/api/tickets/{ticket_id}", json={"status": status}, headers=admin,
                                     timeout=10)
            assert patched.status_code == 200, patched.text
        tickets.append(ticket_id)
    # "Why hasn't this arrived?": the log says what each held delivery waits for.
    waiting = requests.get(f"{base}/api/deliveries?status=waiting&limit=1000", headers=admin, timeout=10).json()
    assert len(waiting["deliveries"]) == OUTAGE_TICKETS * 3
    assert all(d["waiting_for"] for d in waiting["deliveries"])
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
    receiver.come_back()

    count = OUTAGE_TICKETS * 4
    try:
        wait_until_logged_delivered(redis_client, count, timeout=180)
    except AssertionError:
        raise AssertionError(f"not all delivered: {engine_state(redis_client)}") from None
    per_ticket: dict[str, list[str]] = defaultdict(list)
    for arrival in receiver.snapshot():
        if 200 <= arrival.status < 300:
            per_ticket[arrival.ticket_id].append(arrival.event)
    expected = ["ticket.created", "ticket.updated", "ticket.updated", "ticket.resolved"]
    assert {t: per_ticket[t] for t in tickets if per_ticket[t] != expected} == {}
