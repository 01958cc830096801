"""Attempt outcomes and engine limits, with the real drainer run in this process against
real local HTTP servers and the test Redis (drain_queued)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table
from support.delivery import drain_queued, publish_tickets, shown
from support.plugins import PlainSink, PlainSinkPlugin, UrlOptions
from support.processes import wait_until
from support.servers import Answer, SinkServer

from gateway import hookimpl
from gateway.delivery.delivery_log import find_deliveries
from gateway.delivery.drainer import Drainer
from gateway.delivery.sweeper import Sweeper
from gateway.sinks import SinkType


class BrokenSink(PlainSink):
    def render(self, event: Any, target: Any, delivery: Any) -> Any:
        raise RuntimeError("template exploded; secret=hunter2")


class Observer:
    """A plugin that registers a broken sink type and records every attempt it observes."""

    __name__ = "observer"

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="broken", options_schema=UrlOptions, factory=BrokenSink))

    @hookimpl
    def delivery_attempted(self, attempt: dict[str, Any]) -> None:
        self.attempts.append(attempt)


@pytest.fixture
def server():
    with SinkServer() as running:
        yield running


@pytest.fixture
def build(make_runtime: Any, redis_url: str, tmp_path: Path):
    def runtime_for(sinks: list[dict[str, Any]], plugins: list[Any] | None = None, **delivery: Any) -> Any:
        config = engine_config(redis_url, tmp_path, sinks, **delivery)
        return make_runtime(config, plugins=[PlainSinkPlugin(), *(plugins or [])])

    return runtime_for


def test_a_sink_that_raises_costs_a_failed_attempt_not_the_worker(build, server):
    observer = Observer()
    runtime = build([sink_table("broken", server.url, type="broken", retry_schedule=[]),
                     sink_table("hook", server.url, retry_schedule=[])], plugins=[observer])
    broken_id, good_id = publish_tickets(runtime)
    drain_queued(runtime)

    broken = shown(runtime, broken_id)
    assert broken["status"] == "failed"
    [attempt] = broken["attempt_log"]
    assert attempt["error"]["code"] == "render_error" and "RuntimeError" in attempt["error"]["message"]
    assert "hunter2" not in str(broken)  # the exception text may hold anything: not logged
    assert shown(runtime, good_id)["status"] == "delivered"
    # The observer hook saw every attempt, as recorded.
    assert sorted(a["delivery_id"] for a in observer.attempts) == sorted([broken_id, good_id])
    assert {a["delivery_id"]: a["status"] for a in observer.attempts} == {broken_id: "failed", good_id: "delivered"}


def test_a_redirect_is_not_followed_and_counts_as_a_failure(build, server):
    server.answer(Answer(302, headers={"Location": "http://127.0.0.1:1/elsewhere"}))
    runtime = build([sink_table("hook", server.url, retry_schedule=[60])])
    [delivery_id] = publish_tickets(runtime)
    drain_queued(runtime)
    found = shown(runtime, delivery_id)
    # Given up (the reference policy): the same request would be redirected again.
    assert found["status"] == "failed" and found["last_status_code"] == 302 and not found["next_attempt_at"]
    assert "redirect not followed" in found["last_error"]
    assert server.count() == 1


def test_private_destinations_are_refused_unless_allowed(build, server):
    runtime = build([sink_table("hook", server.url)], allow_private_networks=False)
    [delivery_id] = publish_tickets(runtime)
    drain_queued(runtime)
    found = shown(runtime, delivery_id)
    assert found["status"] == "failed" and found["attempt_log"][0]["error"]["code"] == "ssrf_refused"
    assert server.count() == 0


def test_the_in_flight_cap_holds_for_a_slow_sink(build, server):
    server.default = Answer(200, delay=0.5)
    runtime = build([sink_table("hook", server.url, max_in_flight=2)])
    ids = publish_tickets(runtime, 6)
    drain_queued(runtime, concurrency=8)
    assert all(shown(runtime, i)["status"] == "delivered" for i in ids)
    assert server.max_active == 2


def test_the_rate_limit_spaces_claims(build, server):
    runtime = build([sink_table("hook", server.url, rate_limit=4)])
    publish_tickets(runtime, 5)
    drain_queued(runtime)
    times = [r.at for r in server.received]
    assert len(times) == 5
    # Four intervals of 250 ms between five claims (less a little for send-time noise).
    assert times[-1] - times[0] >= 0.75


def test_an_expired_event_fails_its_delivery_clearly(build, server):
    runtime = build([sink_table("hook", server.url)])
    [delivery_id] = publish_tickets(runtime)
    event_id = shown(runtime, delivery_id)["event_id"]
    runtime.redis.delete(runtime.keys.event(event_id))
    drain_queued(runtime)
    found = shown(runtime, delivery_id)
    assert found["status"] == "failed" and found["attempt_log"][0]["error"]["code"] == "event_expired"
    assert server.count() == 0


def test_the_sweeper_fails_deliveries_of_a_sink_no_longer_configured(build, server):
    before = build([sink_table("hook", server.url), sink_table("gone", server.url)])
    hook_id, gone_id = publish_tickets(before)
    # As if the publishing process died before enqueuing the wake-ups and their drainer
    # leases lapsed: the sweeper must cope.
    keys = before.keys
    before.redis.delete(before.queue.key, keys.drainers("hook"), keys.drainers("gone"))

    after = build([sink_table("hook", server.url)])
    drainer = Drainer(after, 4)
    try:
        Sweeper(drainer).sweep()
        drain_queued(after)
        # Re-woken by the sweeper: the drainer it started runs in its own thread, so wait for
        # it (stopping the drainer before its first claim would leave the delivery pending).
        wait_until(lambda: shown(after, hook_id)["status"] == "delivered", what="the re-woken delivery")
    finally:
        drainer.stop()
    gone = shown(after, gone_id)
    assert gone["status"] == "failed"
    assert gone["attempt_log"][0]["error"]["code"] == "sink_not_configured"


def test_an_expired_in_flight_lease_goes_back_to_the_front_of_the_ready_list(build, server):
    runtime = build([sink_table("hook", server.url)])
    first, second = publish_tickets(runtime, 2)
    keys = runtime.keys
    # As if a worker claimed `first` and died: its lease ran out.
    runtime.redis.lrem(keys.ready("hook"), 0, first)
    runtime.redis.zadd(keys.inflight("hook"), {first: int(time.time() * 1000) - 1})
    drainer = Drainer(runtime, 4)
    try:
        assert Sweeper(drainer).sweep() == 1
    finally:
        drainer.stop()
    assert [i.decode() for i in runtime.redis.lrange(keys.ready("hook"), 0, -1)] == [first, second]
    assert runtime.redis.zcard(keys.inflight("hook")) == 0


def test_the_worker_summary_counts_outcomes_since_the_last_line(build, server):
    from gateway.delivery.worker import Summary

    server.answer(Answer(500))
    runtime = build([sink_table("hook", server.url, retry_schedule=[60])])
    publish_tickets(runtime, 3)
    [job_id] = [i.decode() for i in runtime.redis.lrange(runtime.queue.key, 0, -1)]
    drainer = Drainer(runtime, 4)
    try:
        drainer.run_inline("hook", job_id)  # the drain job's id is its drainer token
        summary = Summary(drainer, interval=60)
        assert summary.line() == "last 60s: 2 delivered, 1 retrying, 0 failed; 0 in flight"
        assert summary.line() is None
    finally:
        drainer.stop()


def test_publishes_racing_the_drainers_release_are_never_stranded(build, server, monkeypatch):
    """Without the sweeper, only the claim/release protocol gets a delivery out. Publish one
    event at a time, at random moments just after the previous one arrived, when the drainer
    is deciding to release (a short linger makes that often): each must still arrive, since
    a stranded one would have no drainer and nothing later to pick it up."""
    import random

    from support.delivery import WakeupRunner

    from gateway.delivery import drainer as drainer_module

    monkeypatch.setattr(drainer_module, "LINGER_S", 0.005)
    monkeypatch.setattr(drainer_module, "WAIT_S", 0.005)
    runtime = build([sink_table("hook", server.url)])
    rng = random.Random(7)
    with WakeupRunner(runtime, Drainer(runtime, 8)) as runner:
        for n in range(1, 151):
            publish_tickets(runtime)
            wait_until(lambda n=n: server.count() >= n, what=f"delivery {n}, with no sweeper running")
            time.sleep(rng.uniform(0, 0.2))  # around the linger (Redis times a blocking wait in ~0.1 s steps)
        # A wake-up may still be queued for work an earlier drainer already did: it too
        # must find nothing and release.
        wait_until(lambda: (runtime.redis.llen(runtime.queue.key) == 0 and runner.drainer.idle
                            and runtime.redis.zcard(runtime.keys.drainers("hook")) == 0),
                   what="every drainer released")
    assert runner.wakeups > 1  # drainers did release and new ones were woken


class PickySink(PlainSink):
    def classify(self, response: Any, target: Any) -> Any:
        from gateway.sinks import Outcome

        if response.status_code == 404:
            return Outcome.give_up("channel_not_found", pause_sink=True)
        return super().classify(response, target)


class PickyPlugin:
    __name__ = "picky"

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="picky", options_schema=UrlOptions, factory=PickySink))


def test_give_up_with_pause_fails_without_retries_and_pauses_the_sink(build, server):
    from gateway.delivery import sink_state as sinkstate

    server.answer(Answer(404, b"channel_not_found"))
    runtime = build([sink_table("hook", server.url, type="picky", retry_schedule=[60])], plugins=[PickyPlugin()])
    [delivery_id] = publish_tickets(runtime)
    drain_queued(runtime)
    found = shown(runtime, delivery_id)
    assert found["status"] == "failed" and found["attempt_log"][0]["outcome"] == "give_up"
    [state] = sinkstate.sink_states(runtime)
    assert state["state"] == "paused" and state["paused_reason"] == "channel_not_found"


def test_the_sweeper_trims_log_indexes_past_the_retention(build, server):
    runtime = build([sink_table("hook", server.url)])
    [recent] = publish_tickets(runtime)
    keys = runtime.keys
    old_ms = int(time.time() * 1000) - int(runtime.settings.retention_days * 86_400_000) - 1000
    for index in (keys.deliveries, keys.sink_deliveries("hook")):
        runtime.redis.zadd(index, {"dlv_ancient": old_ms})
    # The events index as well (its events expired with the retention): it used to grow for ever.
    [recent_event] = [e.decode() for e in runtime.redis.zrange(keys.events, 0, -1)]
    runtime.redis.zadd(keys.events, {"evt_ancient": old_ms})
    drainer = Drainer(runtime, 2)
    try:
        Sweeper(drainer).sweep()
    finally:
        drainer.stop()
    for index in (keys.deliveries, keys.sink_deliveries("hook")):
        assert [i.decode() for i in runtime.redis.zrange(index, 0, -1)] == [recent]
    assert [e.decode() for e in runtime.redis.zrange(keys.events, 0, -1)] == [recent_event]
    assert [row["id"] for row in find_deliveries(runtime, recent_event)] == [recent]


def test_an_idle_process_joins_a_backlog_whose_wakeups_all_went_elsewhere(build, server):
    runtime = build([sink_table("hook", server.url)])
    ids = publish_tickets(runtime, 200)
    # Both wake-up tokens the publishes reserved count as live, as if another process held them.
    assert runtime.redis.zcard(runtime.keys.drainers("hook")) == 2
    idle = Drainer(runtime, 8)
    try:
        Sweeper(idle).sweep()
        assert idle.draining() == ["hook"]
        # One drainer per process and sink: a second pass adds none.
        starts = idle.scripts.sweep(["hook"], idle.draining()).starts
        assert starts == []
        wait_until(lambda: server.count() >= len(ids), what="the backlog drained by the joining process")
    finally:
        idle.stop()
