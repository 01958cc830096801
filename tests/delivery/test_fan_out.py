"""Fan-out sinks keep their breaker, in-flight cap and rate limit per target (issue #13): one
Zap whose URL is dead, hanging or slow never holds up another Zap's deliveries; and a refusal
of ours (ssrf_refused) never counts towards a circuit.

Real Redis, a real ``gateway worker`` process, real HTTP servers playing the Zaps' hook
receivers (and a closed port playing a dead one), subscriptions made through Zapier's REST
Hooks API. Deadlines are "wait until X, fail after N s"; the oracles are logical ("delivered
while the other targets' circuits were open"), not timings.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.configs import write_config
from support.delivery import shown
from support.processes import GatewayProcess, start_worker, wait_until
from support.servers import Answer, SinkServer

from gateway.delivery import delivery_log, sink_state
from gateway.events import Event
from gateway.integrations import store
from gateway.publish.publisher import publish

ADMIN = "admin-token-1-0123456789abcdef01"
KEY = "zk_" + "k" * 29


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def zapier(make_client: Callable[..., Any], redis_url: str, tmp_path: Path
           ) -> Iterator[Callable[..., tuple[Any, Any, Callable[[], GatewayProcess]]]]:
    """zapier(events, delivery={...}, **sink) -> (runtime, client, start a worker)."""
    procs: list[GatewayProcess] = []

    def build(events: list[str], delivery: dict[str, Any] | None = None, **sink: Any
              ) -> tuple[Any, Any, Callable[[], GatewayProcess]]:
        config = {"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": ADMIN},
                  "delivery": {"allow_private_networks": True, "retry_jitter": 0, **(delivery or {})},
                  "sinks": [{"name": "zapier", "type": "zapier", "events": events, "api_keys": [KEY], **sink}]}
        client = make_client(config)
        path = write_config(tmp_path / "gateway.toml", config)

        def worker() -> GatewayProcess:
            proc = start_worker(path, tmp_path / f"worker-{len(procs)}.log", plain=False)
            procs.append(proc)
            return proc

        return client.application.extensions["gateway"], client, worker

    yield build
    for proc in procs:
        proc.stop()


def subscribe(client: Any, url: str, event: str = "ticket.created") -> str:
    response = client.post("/api/zapier/hooks", json={"hookUrl": url, "event": event}, headers={"X-API-Key": KEY})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def create_ticket(client: Any, subject: str) -> str:
    response = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": subject, "message": "Help", "customer_email": "bob@example.com"}})
    assert response.status_code == 201
    return response.get_json()["ticket"]["id"]


def dead_deliveries(runtime: Any, dead: list[str]) -> list[str]:
    """The delivery ids of the dead Zaps (found through the delivery log)."""
    rows = delivery_log.list_deliveries(runtime, sink="zapier", limit=1000)
    found = [r["id"] for r in rows if r["target"]["key"] in dead]
    assert len(found) >= len(dead)
    return found


def test_twelve_dead_subscriptions_do_not_stall_the_working_one(zapier):
    # The finding: 12 Zaps pointing at a closed port opened the SINK's circuit, and the one
    # working Zap got nothing for 75 s (and the cool-down doubles). Now each Zap has its own.
    runtime, client, worker = zapier(["ticket.created"], delivery={"circuit_cooldown": 600},
                                     retry_schedule=[0.5] * 20, failure_threshold=2)
    with SinkServer() as working:
        dead = [subscribe(client, closed_port_url()) for _ in range(12)]
        live = subscribe(client, working.url)
        worker()
        first = create_ticket(client, "First")
        # Two failures in a row open a circuit (for ten minutes): once the dead Zaps have
        # failed that often, a circuit kept per sink would hold every Zap's deliveries.
        wait_until(lambda: sum(shown(runtime, i)["attempts"] for i in dead_deliveries(runtime, dead)) >= 2,
                   what="the dead Zaps to fail twice")
        wait_until(lambda: working.count() == 1, what="the first ticket at the working Zap")

        # The working Zap still gets every new ticket: it is not held behind the dead ones.
        later = [create_ticket(client, f"Later {i}") for i in range(5)]
        wait_until(lambda: working.count() == 6, what="the working Zap to receive the five later tickets")
        assert sorted(r.json["ticket_id"] for r in working.received) == sorted([first, *later])
        wait_until(lambda: sink_state.sink_states(runtime)[0]["targets"]["circuit_open"] == 12,
                   what="each dead Zap's own circuit open")
        # The dead Zaps' deliveries wait for their cool-down without being attempted: each is
        # parked once its retry comes due (rq's scheduler, about a second: waited for, since
        # the last circuit may have opened just now) and is claimed.
        state = wait_until(lambda: (found := sink_state.sink_states(runtime)[0])["targets"]["parked"] > 0 and found,
                           what="a dead Zap's delivery parked")
        assert state["state"] == "ok"
        def listed() -> list[dict[str, Any]]:
            return client.get("/api/deliveries?sink=zapier&limit=1000",
                              headers={"Authorization": f"Bearer {ADMIN}"}).get_json()["deliveries"]

        # (The receiver counts a request when it arrives; the worker logs it once answered.)
        wait_until(lambda: {d["status"] for d in listed() if d["target"]["key"] == live} == {"delivered"},
                   what="the working Zap's deliveries logged as delivered")
        assert {d["status"] for d in listed() if d["target"]["key"] in dead} <= {"pending", "retrying"}

        # Resume closes every target's circuit: what waited goes out (and fails again, here).
        resumed = sink_state.resume(runtime, "zapier")
        assert resumed["targets"]["circuit_open"] == 0


def test_a_hanging_subscription_holds_only_its_own_in_flight_slots(zapier):
    _, client, worker = zapier(["ticket.created"], max_in_flight=2, timeout=20)
    with SinkServer(Answer(200, delay=15)) as hanging, SinkServer() as working:
        subscribe(client, hanging.url)
        subscribe(client, working.url)
        worker()
        tickets = [create_ticket(client, f"T{i}") for i in range(8)]
        # All eight reach the working Zap while the hanging one still holds its first two.
        wait_until(lambda: working.count() == 8, what="the working Zap to receive all eight")
        assert hanging.count() == 2 and hanging.max_active == 2
        assert sorted(r.json["ticket_id"] for r in working.received) == sorted(tickets)


def test_the_rate_limit_applies_to_each_subscription(zapier):
    _, client, worker = zapier(["ticket.created"], rate_limit=2)
    with SinkServer() as a, SinkServer() as b:
        subscribe(client, a.url)
        subscribe(client, b.url)
        for i in range(4):
            create_ticket(client, f"T{i}")
        worker()
        wait_until(lambda: a.count() == 4 and b.count() == 4, what="four deliveries to each Zap")
    for zap in (a, b):
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(zap.received)]
        assert min(gaps) >= 0.25, gaps  # 2 per second for each Zap (arrival times jitter a little)
    # ...and not 2 per second for the sink as a whole: each slot went to both Zaps at once, so
    # the sink sent some deliveries closer together than its rate limit would allow alone.
    both = sorted(r.at for r in (*a.received, *b.received))
    assert min(later - earlier for earlier, later in itertools.pairwise(both)) < 0.25


def test_order_holds_per_subscription(zapier):
    runtime, client, worker = zapier(["ticket.updated"], ordering="per_ticket", retry_schedule=[1, 1],
                                     failure_threshold=100)
    with SinkServer() as picky, SinkServer() as other:
        picky.answer(Answer(500), Answer(500))
        subscribe(client, picky.url, "ticket.updated")
        subscribe(client, other.url, "ticket.updated")
        worker()
        for status in ("open", "escalated", "resolved"):
            publish(runtime, Event.new("ticket.updated", {"ticket": {"id": "t-1", "status": status}}))
        wait_until(lambda: other.count() == 3, what="the other Zap's three updates")
        wait_until(lambda: picky.count() == 5, what="the picky Zap's five requests")
    assert [r.json["status"] for r in other.received] == ["open", "escalated", "resolved"]
    assert [r.json["status"] for r in picky.received] == ["open", "open", "open", "escalated", "resolved"]


def test_a_refused_destination_fails_its_deliveries_without_opening_the_circuit(make_runtime, redis_url, tmp_path,
                                                                                drain_deliveries):
    # ssrf_refused is our configuration saying no, not the destination failing: the sink's
    # other deliveries must not be deferred behind a circuit it would open.
    runtime = make_runtime({"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data")},
                            "delivery": {"allow_private_networks": False, "circuit_cooldown": 600},
                            "sinks": [{"name": "internal", "type": "generic_webhook", "events": ["*"],
                                       "url": "http://127.0.0.1:9/hook", "failure_threshold": 2}]})
    ids = [i for n in range(6) for i in publish(runtime, Event.new("ticket.created", {"ticket": {"id": f"t{n}"}})
                                                ).delivery_ids]
    attempts = drain_deliveries(runtime)
    assert sorted(a["error"]["code"] for a in attempts) == ["ssrf_refused"] * 6
    assert {shown(runtime, i)["status"] for i in ids} == {"failed"}
    [state] = sink_state.sink_states(runtime)
    assert (state["state"], state["failure_streak"]) == ("ok", 0)


def test_deleting_a_fan_out_sink_cancels_what_its_targets_held_and_drops_their_state(
        make_client, redis_url, redis_client, tmp_path, drain_deliveries):
    # A Zapier sink created through the sinks API, one dead Zap: its circuit opens and a later
    # delivery is parked for it. Deleting the sink cancels every delivery, the parked one
    # included, and leaves no per-target state for a sink created later under the name.
    client = make_client({"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"),
                                      "admin_token": ADMIN},
                          "delivery": {"allow_private_networks": True, "retry_jitter": 0, "circuit_cooldown": 600}})
    runtime = client.application.extensions["gateway"]
    store.create(runtime, {"name": "zapier", "type": "zapier", "events": ["ticket.created"], "api_keys": [KEY],
                           "retry_schedule": [3600], "failure_threshold": 1}, "tester")
    subscribe(client, closed_port_url())
    first = create_ticket(client, "First")
    drain_deliveries(runtime)  # refused: the Zap's circuit opens
    create_ticket(client, "Second")
    drain_deliveries(runtime)  # the Zap may not go now: parked
    [state] = sink_state.sink_states(runtime)
    assert state["targets"] == {"circuit_open": 1, "half_open": 0, "parked": 1}, (first, state)

    assert store.delete(runtime, "zapier", "tester") == 2
    rows = delivery_log.list_deliveries(runtime, sink="zapier", limit=10)
    assert {(r["status"], r["cancel_reason"]) for r in rows} == {("cancelled", "sink_deleted")}
    assert sorted(k.decode() for k in redis_client.scan_iter("gw:sink:zapier:*")
                  if b":stats:" not in k and not k.endswith(b":deliveries")) == []
