"""Ordered delivery per ticket (issue #18): a sink with ``ordering = "per_ticket"`` gets each
ticket's events in the order they were published, however its earlier deliveries fare, and
one ticket's trouble never holds up another's.

Real Redis, real ``gateway worker`` processes, real HTTP receivers; events come in through
the receive endpoint and the tickets API, or the publisher, exactly as in production.
Deadlines are "wait until X, fail after N s"; nothing asserts how fast things are.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.configs import write_config
from support.delivery import shown
from support.processes import GatewayProcess, start_worker, wait_until
from support.servers import Answer, Received, SinkServer

from gateway.config import ConfigError, parse_config
from gateway.delivery import delivery_log
from gateway.events import Event
from gateway.integrations import store
from gateway.plugins import load_plugins
from gateway.publish.publisher import publish
from gateway.web.app import create_app

ADMIN = "admin-token-1-0123456789abcdef01"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
LIFECYCLE = ("ticket.created", "ticket.updated", "ticket.resolved")


def event_of(received: Received) -> str:
    return received.json["event"]


def ticket_of(received: Received) -> str:
    return received.json["data"]["ticket"]["id"]


@pytest.fixture
def receiver() -> Iterator[SinkServer]:
    with SinkServer() as server:
        yield server


@pytest.fixture
def gateway(make_runtime: Callable[..., Any], redis_url: str, tmp_path: Path, receiver: SinkServer
            ) -> Iterator[Callable[..., tuple[Any, Any, Callable[[], GatewayProcess]]]]:
    """gateway(**sink_options, delivery={...}) -> (runtime, flask test client, start a worker):
    one generic webhook sink to ``receiver`` with ordering per ticket, its config on disk."""
    procs: list[GatewayProcess] = []

    def build(delivery: dict[str, Any] | None = None, **sink: Any) -> tuple[Any, Any, Callable[[], GatewayProcess]]:
        config = {
            "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": ADMIN},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0, **(delivery or {})},
            "sinks": [{"name": "crm", "type": "generic_webhook", "url": receiver.url, "events": ["*"],
                       "ordering": "per_ticket", **sink}],
        }
        path = write_config(tmp_path / "gateway.toml", config)
        runtime = make_runtime(config)
        app = create_app(runtime)
        app.testing = True

        def worker() -> GatewayProcess:
            proc = start_worker(path, tmp_path / f"worker-{len(procs)}.log", plain=False)
            procs.append(proc)
            return proc

        return runtime, app.test_client(), worker

    yield build
    for proc in procs:
        proc.stop()


def publish_lifecycle(runtime: Any, ticket_id: str, events: tuple[str, ...] = LIFECYCLE) -> list[str]:
    """Publish ``events`` of one ticket, in order; their delivery ids."""
    ids = []
    for name in events:
        [delivery_id] = publish(runtime, Event.new(name, {"ticket": {"id": ticket_id, "subject": "Hi"}})).delivery_ids
        ids.append(delivery_id)
    return ids


def arrivals(receiver: SinkServer, ticket_id: str) -> list[str]:
    with receiver.lock:
        return [event_of(r) for r in receiver.received if ticket_of(r) == ticket_id]


def test_the_ordering_option_is_validated_with_the_sinks_other_common_options():
    plugins = load_plugins()
    sink = {"name": "crm", "type": "generic_webhook", "url": "https://crm.example.com/h", "events": ["*"]}
    assert parse_config({"sinks": [sink]}, plugins).sinks[0].ordering == "none"
    assert parse_config({"sinks": [{**sink, "ordering": "per_ticket"}]}, plugins).sinks[0].ordering == "per_ticket"
    with pytest.raises(ConfigError) as caught:
        parse_config({"sinks": [{**sink, "ordering": "fifo"}]}, plugins)
    assert list(caught.value.errors) == ["sinks[0].ordering"]


def test_a_created_retried_twice_is_still_received_before_the_update_and_resolution(gateway, receiver, tmp_path):
    # The consumer's story: the CRM rejects the ticket's creation twice; meanwhile an agent
    # resolves the ticket. The CRM must never hear of the resolution before the creation.
    runtime, client, worker = gateway(retry_schedule=[5, 5])
    config_path = tmp_path / "gateway.toml"
    receiver.answer(Answer(500, b"db locked"), Answer(500, b"db locked"))
    worker()
    created = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": "Cannot log in", "message": "Locked out", "customer_email": "jane@example.com"}})
    assert created.status_code == 201
    ticket_id = created.get_json()["ticket"]["id"]
    patched = client.patch(f"/api/tickets/{ticket_id}", json={"status": "resolved"}, headers=AUTH)
    assert patched.status_code == 200

    # While the creation is being retried, the others wait, and say for what.
    rows = {r["event"]: r for r in delivery_log.list_deliveries(runtime, sink="crm")}
    assert rows["ticket.created"]["status"] in ("pending", "retrying")
    assert rows["ticket.updated"]["status"] == "waiting"
    assert rows["ticket.updated"]["waiting_for"] == rows["ticket.created"]["id"]
    assert rows["ticket.resolved"]["waiting_for"] == rows["ticket.updated"]["id"]
    api = client.get(f"/api/deliveries/{rows['ticket.resolved']['id']}", headers=AUTH).get_json()["delivery"]
    assert api["status"] == "waiting" and api["waiting_for"] == rows["ticket.updated"]["id"]
    shown_by_cli = subprocess.run([sys.executable, "-m", "gateway", "--config", str(config_path), "delivery", "show",
                                   rows["ticket.updated"]["id"]],
                                  capture_output=True, text=True, timeout=60, check=True)
    assert "status:          waiting" in shown_by_cli.stdout
    assert f"waiting for:     {rows['ticket.created']['id']}" in shown_by_cli.stdout

    wait_until(lambda: len(arrivals(receiver, ticket_id)) == 5, what="five requests at the CRM")
    assert arrivals(receiver, ticket_id) == ["ticket.created"] * 3 + ["ticket.updated", "ticket.resolved"]
    assert [r.answered for r in receiver.received] == [500, 500, 200, 200, 200]
    updated = wait_until(lambda: (d := shown(runtime, rows["ticket.updated"]["id"]))["status"] == "delivered" and d,
                         what="the update logged as delivered")
    assert updated["waited_for"]["id"] == rows["ticket.created"]["id"]
    assert updated["waited_for"]["status"] == "delivered"


def test_a_finally_failed_head_releases_the_next_and_the_log_says_so(gateway, receiver):
    runtime, _, worker = gateway(retry_schedule=[0.5])
    receiver.rule = lambda r: Answer(500, b"no") if event_of(r) == "ticket.created" else None
    created, updated, resolved = publish_lifecycle(runtime, "t-1")
    proc = worker()

    wait_until(lambda: shown(runtime, resolved)["status"] == "delivered", what="the resolution delivered")
    assert arrivals(receiver, "t-1") == ["ticket.created", "ticket.created", "ticket.updated", "ticket.resolved"]
    assert shown(runtime, created)["status"] == "failed"
    after = shown(runtime, updated)
    assert after["waited_for"] == {"id": created, "status": "failed", "released_at": after["waited_for"]["released_at"]}
    # The first attempt's record says it too (the log line and the delivery_attempted hook).
    assert after["attempt_log"][0]["waited_for"] == {"delivery_id": created, "status": "failed"}
    assert f"delivery {updated} of ticket.updated to crm: delivered 200 in " in proc.output()
    assert f"after {created} (failed)" in proc.output()
    assert shown(runtime, resolved)["waited_for"]["status"] == "delivered"


def test_a_hundred_stuck_tickets_never_hold_up_the_hundred_and_first(gateway, receiver):
    # Each stuck ticket's first delivery is retried (an hour from now), so its later events
    # wait; ticket "free" has its own queue and goes straight through.
    runtime, _, worker = gateway(retry_schedule=[3600], failure_threshold=1000)
    receiver.rule = lambda r: Answer(500, b"no") if ticket_of(r) != "free" else None
    stuck = {f"stuck-{i}": publish_lifecycle(runtime, f"stuck-{i}") for i in range(100)}
    free = publish_lifecycle(runtime, "free")
    worker()

    wait_until(lambda: all(shown(runtime, i)["status"] == "delivered" for i in free), what="the free ticket delivered")
    assert arrivals(receiver, "free") == list(LIFECYCLE)
    wait_until(lambda: all(shown(runtime, ids[0])["status"] == "retrying" for ids in stuck.values()),
               what="every stuck head retrying")
    for ids in stuck.values():
        assert [shown(runtime, i)["status"] for i in ids[1:]] == ["waiting", "waiting"]
    assert {event_of(r) for r in receiver.received if ticket_of(r) != "free"} == {"ticket.created"}


def test_tickets_receiving_every_first_attempt_rejected_still_arrive_in_order(gateway, receiver):
    # "Done when", as a consumer: a receiver that rejects the first attempt of every delivery.
    # (The circuit breaker would open on the rejections and slow this down: not what is tested.)
    runtime, _, worker = gateway(retry_schedule=[0.2, 0.2], max_in_flight=20, failure_threshold=1000)
    seen: set[str] = set()

    def first_attempt_rejected(received: Received) -> Answer | None:
        delivery_id = received.headers["X-Webhook-Delivery"]
        if delivery_id in seen:
            return None
        seen.add(delivery_id)
        return Answer(503, b"try again")

    receiver.rule = first_attempt_rejected
    tickets = [f"t-{i}" for i in range(20)]
    for ticket_id in tickets:
        publish_lifecycle(runtime, ticket_id)
    worker()
    worker()

    wait_until(lambda: sum(r.answered == 200 for r in receiver.received) == 60, what="60 deliveries")
    for ticket_id in tickets:
        assert arrivals(receiver, ticket_id) == [name for name in LIFECYCLE for _ in (1, 2)], ticket_id


def test_replaying_one_delivery_sends_it_now_but_replaying_every_failed_keeps_each_tickets_order(gateway, receiver):
    runtime, _, worker = gateway(retry_schedule=[], failure_threshold=1000)
    receiver.default = Answer(500, b"down")
    tickets = {f"t-{i}": publish_lifecycle(runtime, f"t-{i}") for i in range(10)}
    worker()
    everything = [i for ids in tickets.values() for i in ids]
    wait_until(lambda: all(shown(runtime, i)["status"] == "failed" for i in everything), what="all failed")

    receiver.default = Answer(200)
    with receiver.lock:
        receiver.received.clear()
    matched, queued = delivery_log.replay_matching(runtime, "crm", "failed")
    assert (matched, queued) == (30, 30)
    wait_until(lambda: all(shown(runtime, i)["status"] == "delivered" for i in everything), what="all delivered")
    for ticket_id in tickets:
        assert arrivals(receiver, ticket_id) == list(LIFECYCLE), ticket_id

    # One replay is explicit: sent now, after the ticket's later events (the docs say so).
    created = tickets["t-0"][0]
    assert delivery_log.replay(runtime, [created]).outcomes == {created: "queued"}
    wait_until(lambda: len(arrivals(receiver, "t-0")) == 4, what="the replayed creation")
    assert arrivals(receiver, "t-0") == [*LIFECYCLE, "ticket.created"]


def test_events_without_a_ticket_and_unordered_sinks_are_not_held(make_runtime, redis_url, tmp_path, receiver):
    runtime = make_runtime({
        "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data")},
        "delivery": {"allow_private_networks": True},
        "sinks": [{"name": "ordered", "type": "generic_webhook", "url": receiver.url, "events": ["*"],
                   "ordering": "per_ticket"},
                  {"name": "plain", "type": "generic_webhook", "url": receiver.url, "events": ["*"]}]})
    ids = [i for _ in range(3)
           for i in publish(runtime, Event.new("ticket.updated", {"ticket": {"id": "t"}})).delivery_ids]
    statuses = {(shown(runtime, i)["sink"], shown(runtime, i)["status"]) for i in ids}
    assert statuses == {("ordered", "pending"), ("ordered", "waiting"), ("plain", "pending")}
    assert [shown(runtime, i)["status"] for i in ids if shown(runtime, i)["sink"] == "plain"] == ["pending"] * 3
    # A conversation message is ordered by the ticket it belongs to (its type says where).
    message = {"conversation": {"id": "m1", "ticket_id": "t", "author": "Jane", "role": "customer", "message": "Hi",
                                "created_at": "2026-01-15T10:40:02.000Z"}}
    [ordered_id, _] = publish(runtime, Event.new("conversation.added", message)).delivery_ids
    assert shown(runtime, ordered_id)["status"] == "waiting" and shown(runtime, ordered_id)["ordering_key"] == "t"
    # No ticket to order by: not held.
    keyless = publish(runtime, Event.new("ticket.updated", {"ticket": {"subject": "no id"}})).delivery_ids
    assert {shown(runtime, i)["status"] for i in keyless} == {"pending"}
    # Test events (send-test) go out at once, never behind an earlier test of the same sample.
    tests = [publish(runtime, Event.new("ticket.updated", {"ticket": {"id": "t"}}), only_sink="ordered").delivery_ids
             for _ in range(2)]
    assert [shown(runtime, i)["status"] for [i] in tests] == ["pending", "pending"]


def test_deleting_an_ordered_sink_cancels_every_queued_delivery_and_frees_the_tickets_queue(
        make_runtime, redis_url, redis_client, tmp_path, receiver, drain_deliveries):
    # A cancelled delivery has ended like a delivered or failed one: cancel.lua takes it out of
    # its ticket's queue (order_leave), so a cancelled head releases the next (cancelled in
    # turn, since its sink is gone too), and nothing is left to hold up a sink created again
    # under the same name.
    runtime = make_runtime({"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data")},
                            "delivery": {"allow_private_networks": True, "retry_jitter": 0}})
    table = {"name": "crm", "type": "generic_webhook", "url": receiver.url, "events": ["*"],
             "ordering": "per_ticket", "retry_schedule": [3600]}
    store.create(runtime, table, "tester")
    receiver.default = Answer(500, b"down")
    created, updated, resolved = publish_lifecycle(runtime, "t-1")
    drain_deliveries(runtime)
    assert [shown(runtime, i)["status"] for i in (created, updated, resolved)] == ["retrying", "waiting", "waiting"]

    assert store.delete(runtime, "crm", "tester") == 3
    after = [shown(runtime, i) for i in (created, updated, resolved)]
    assert [(d["status"], d["cancel_reason"]) for d in after] == [("cancelled", "sink_deleted")] * 3
    assert after[1]["waited_for"]["id"] == created and after[1]["waited_for"]["status"] == "cancelled"
    assert list(redis_client.scan_iter("gw:order:crm:*")) == []
    drain_deliveries(runtime)
    assert arrivals(receiver, "t-1") == ["ticket.created"]

    # The same name again: the ticket's next events go at once, in order.
    receiver.default = Answer(200)
    store.create(runtime, {**table, "retry_schedule": [1]}, "tester")
    later = publish_lifecycle(runtime, "t-1")
    assert [shown(runtime, i)["status"] for i in later] == ["pending", "waiting", "waiting"]
    drain_deliveries(runtime)
    wait_until(lambda: all(shown(runtime, i)["status"] == "delivered" for i in later), what="the new sink's deliveries")
    assert arrivals(receiver, "t-1") == ["ticket.created", *LIFECYCLE]


def test_a_claimed_delivery_of_a_deleted_sink_cancelled_by_the_worker_releases_the_next(
        make_runtime, redis_url, redis_client, tmp_path, receiver):
    # The worker's path (AttemptRunner.cancel: a delivery of a tombstoned sink met after the
    # deletion's batches, e.g. a retry coming due) ends it through cancel.lua too.
    runtime = make_runtime({"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data")},
                            "delivery": {"allow_private_networks": True}})
    store.create(runtime, {"name": "crm", "type": "generic_webhook", "url": receiver.url, "events": ["*"],
                           "ordering": "per_ticket"}, "tester")
    created, updated, _ = publish_lifecycle(runtime, "t-1")
    redis_client.zadd("gw:inflight:crm", {created: 2**40})  # as a claim would have left it
    assert runtime.scripts.cancel("crm", [created], delivery_log.SINK_DELETED,
                                  delivery_log.SINK_DELETED_MESSAGE, claimed=True) == 1
    assert shown(runtime, created)["status"] == "cancelled"
    released = shown(runtime, updated)
    assert released["status"] == "pending" and released["waited_for"]["status"] == "cancelled"
    assert redis_client.lrange("gw:ready:crm", 0, -1)[-1].decode() == updated
    assert redis_client.zscore("gw:inflight:crm", created) is None
