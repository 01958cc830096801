"""System events end to end: real Redis, real worker processes, real local HTTP servers.

A sink "crm" goes down (answers 503) and comes back; a second sink "alerts", a local
receiver subscribed to the system events, is told once that crm's circuit opened, once that
it closed, and gets one delivery.failed summary counting the failed deliveries, not one per
delivery. Pauses, resumes and config changes made through the API reach it too, with no
secret in them. No sink ever gets a system event about itself, and "*" does not include them.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table, write_config
from support.delivery import publish_tickets, shown
from support.plugins import PlainSinkPlugin
from support.processes import GatewayProcess, start_worker, wait_until
from support.servers import Answer, Received, SinkServer

from gateway.events import Event
from gateway.publish.builtin_events import SYSTEM_EVENT_TYPES
from gateway.publish.publisher import publish

ADMIN_TOKEN = "system-events-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SYSTEM_EVENTS = [t.name for t in SYSTEM_EVENT_TYPES]


@pytest.fixture
def sink_server() -> Iterator[Callable[..., SinkServer]]:
    """sink_server(default=None) -> a started SinkServer, stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield lambda default=None: stack.enter_context(SinkServer(default))


@pytest.fixture
def gateway(redis_url: str, make_runtime: Any, make_client: Any, tmp_path: Path) -> Iterator[Any]:
    """gateway(sinks, workers=1, **delivery) -> (runtime, admin API client), with worker processes."""
    procs: list[GatewayProcess] = []

    def build(sinks: list[dict[str, Any]], workers: int = 1, **delivery: Any) -> tuple[Any, Any]:
        config = engine_config(redis_url, tmp_path, sinks, **delivery)
        config["gateway"]["admin_token"] = ADMIN_TOKEN
        path = write_config(tmp_path / "gateway.toml", config)
        client = make_client(config, plugins=[PlainSinkPlugin()])
        runtime = client.application.extensions["gateway"]
        for index in range(workers):
            procs.append(start_worker(path, tmp_path / f"worker-{index}.log"))
        return runtime, client

    yield build
    for proc in procs:
        proc.stop()


def system_events(server: SinkServer, name: str | None = None) -> list[dict[str, Any]]:
    """The system events ``server`` received (the envelopes), oldest first."""
    with server.lock:
        received: list[Received] = list(server.received)
    envelopes = [r.json for r in received]
    return [e for e in envelopes if e["event"] in SYSTEM_EVENTS and (name is None or e["event"] == name)]


def ended(runtime: Any, ids: list[str]) -> dict[str, str]:
    return {i: shown(runtime, i)["status"] for i in ids}


def test_a_sink_that_goes_down_and_recovers_is_one_alert_each_way_and_one_failure_summary(gateway, sink_server):
    crm = sink_server(Answer(503, b"down"))
    alerts = sink_server()
    everything = sink_server()
    runtime, _ = gateway(
        [sink_table("crm", crm.url, events=["ticket.created", *SYSTEM_EVENTS], failure_threshold=3,
                    retry_schedule=[]),
         sink_table("alerts", alerts.url, events=SYSTEM_EVENTS),
         sink_table("everything", everything.url)],  # events = ["*"]
        workers=2, circuit_cooldown=1, circuit_max_cooldown=2)

    # Ten deliveries attempted at once (two workers, up to 10 in flight) all fail: the
    # circuit opens at the third failure, whichever worker records it.
    first = [i for i in publish_tickets(runtime, 10) if shown(runtime, i)["sink"] == "crm"]
    wait_until(lambda: set(ended(runtime, first).values()) == {"failed"}, what="the first ten failed")
    wait_until(lambda: system_events(alerts, "delivery.failed"), what="the failure summary")
    # During the outage more tickets wait behind the open circuit; its probes keep failing.
    later = [i for i in publish_tickets(runtime, 3) if shown(runtime, i)["sink"] == "crm"]
    wait_until(lambda: crm.count() >= 12, what="a probe during the outage")

    crm.default = Answer(200)
    wait_until(lambda: system_events(alerts, "sink.circuit_closed"), what="the circuit to close")
    wait_until(lambda: "pending" not in ended(runtime, later).values(), what="what waited to go out")

    opened = system_events(alerts, "sink.circuit_opened")
    closed = system_events(alerts, "sink.circuit_closed")
    assert len(opened) == 1 and len(closed) == 1, [e["event"] for e in system_events(alerts)]
    assert opened[0]["data"]["sink"] == {"name": "crm", "type": "plain"}
    assert opened[0]["data"]["status_code"] == 503 and "503" in opened[0]["data"]["last_error"]
    assert closed[0]["data"]["sink"]["name"] == "crm" and closed[0]["data"]["open_seconds"] > 0
    assert closed[0]["data"]["opened_at"] == opened[0]["data"]["opened_at"]

    # One summary for the whole outage (the next one waits for the 5-minute window), and
    # every failed delivery is counted: in it, or for the next one.
    failed = [i for i, status in ended(runtime, first + later).items() if status == "failed"]
    [summary] = system_events(alerts, "delivery.failed")
    pending = int(runtime.redis.hget(runtime.keys.sink_failures("crm"), "count") or 0)
    assert summary["data"]["failures"] + pending == len(failed) >= 10
    assert summary["data"]["window_seconds"] == 300
    last = summary["data"]["delivery"]
    assert last["id"] in failed and last["event"] == "ticket.created" and last["status_code"] == 503
    assert last["error"]["code"] == "http_status"

    # No loops: crm never got an event about itself; "*" does not include system events.
    assert system_events(crm) == []
    assert system_events(everything) == []


def test_failure_summaries_are_one_per_window_and_count_every_failure(gateway, sink_server):
    crm = sink_server(Answer(400, b"bad"))
    alerts = sink_server()
    runtime, _ = gateway([sink_table("crm", crm.url, events=["ticket.created"], failure_threshold=1000),
                          sink_table("alerts", alerts.url, events=["delivery.failed"])],
                         failure_summary_interval=3)

    ids = publish_tickets(runtime, 4)
    wait_until(lambda: system_events(alerts), what="the first summary")
    ids += publish_tickets(runtime, 4)  # fail within the window that summary started
    crm_ids = [i for i in ids if shown(runtime, i)["sink"] == "crm"]
    wait_until(lambda: set(ended(runtime, crm_ids).values()) == {"failed"}, what="all failed")
    wait_until(lambda: sum(e["data"]["failures"] for e in system_events(alerts)) == 8,
               what="every failure reported")

    summaries = system_events(alerts)
    assert 2 <= len(summaries) <= 3
    stamps = [datetime.fromisoformat(e["timestamp"]).timestamp() for e in summaries]
    # A window (3 s) apart, less the time one publish may take more than the other under load.
    assert all(b - a >= 2 for a, b in itertools.pairwise(stamps)), stamps
    assert all(e["data"]["delivery"]["error"]["code"] == "http_status" for e in summaries)


def test_pauses_by_the_destination_or_through_the_api_and_resumes_are_told(gateway, sink_server):
    crm = sink_server().answer(Answer(410, b"gone"))
    alerts = sink_server()
    runtime, client = gateway([sink_table("crm", crm.url, events=["ticket.created"]),
                               sink_table("alerts", alerts.url, events=["sink.paused", "sink.resumed"])])

    [gone] = [i for i in publish_tickets(runtime) if shown(runtime, i)["sink"] == "crm"]
    wait_until(lambda: system_events(alerts, "sink.paused"), what="sink.paused")
    [paused] = system_events(alerts, "sink.paused")
    assert paused["data"]["sink"]["name"] == "crm" and paused["data"]["reason"].startswith("HTTP 410 Gone")
    assert paused["data"]["delivery_id"] == gone and paused["data"]["actor"] is None

    response = client.post("/api/sinks/crm/resume", headers=AUTH)
    assert response.status_code == 200 and response.get_json()["sink"]["state"] == "ok"
    wait_until(lambda: system_events(alerts, "sink.resumed"), what="sink.resumed")
    [resumed] = system_events(alerts, "sink.resumed")
    assert resumed["data"]["actor"] == "admin" and resumed["data"]["was_paused"] is True
    assert resumed["data"]["paused_reason"] == paused["data"]["reason"]

    # Resuming a sink that is not held changes nothing, and says nothing.
    assert client.post("/api/sinks/crm/resume", headers=AUTH).status_code == 200
    # An admin's pause is told with the admin's name and reason; a second one is no news.
    for _ in range(2):
        response = client.post("/api/sinks/crm/pause", headers=AUTH, json={"reason": "CRM maintenance"})
        assert response.status_code == 200 and response.get_json()["sink"]["state"] == "paused"
    wait_until(lambda: len(system_events(alerts, "sink.paused")) == 2, what="the admin's pause")
    assert client.post("/api/sinks/crm/resume", headers=AUTH).status_code == 200
    wait_until(lambda: len(system_events(alerts, "sink.resumed")) == 2, what="the second resume")
    time.sleep(1)
    paused_events, resumed_events = system_events(alerts, "sink.paused"), system_events(alerts, "sink.resumed")
    assert len(paused_events) == 2 and len(resumed_events) == 2
    by_admin = next(e for e in paused_events if e["data"]["actor"] == "admin")
    assert by_admin["data"]["reason"] == "CRM maintenance" and by_admin["data"]["delivery_id"] is None


def test_changing_a_sink_through_the_integrations_api_is_told_without_its_secrets(gateway, sink_server):
    alerts = sink_server()
    crm = sink_server()
    # ordering = "per_ticket": system events about one sink arrive in the order they happened.
    _, client = gateway([sink_table("alerts", alerts.url, events=["sink.config_changed"], ordering="per_ticket")])

    created = client.post("/api/sinks", headers=AUTH, json={
        "name": "crm", "type": "generic_webhook", "url": crm.url + "/token-in-the-path/abc",
        "events": ["ticket.created", "sink.config_changed"]})
    assert created.status_code == 201, created.get_json()
    secret = created.get_json()["secret"]
    assert client.patch("/api/sinks/crm", headers=AUTH, json={"timeout": 5}).status_code == 200
    rotated = client.post("/api/sinks/crm/rotate-secret", headers=AUTH)
    assert rotated.status_code == 200
    wait_until(lambda: len(system_events(alerts, "sink.config_changed")) == 3, what="three config changes")

    changes = system_events(alerts, "sink.config_changed")
    assert [e["data"]["action"] for e in changes] == ["create", "update", "rotate"]
    assert all(e["data"]["sink"] == {"name": "crm", "type": "generic_webhook"} and e["data"]["actor"] == "admin"
               for e in changes)
    assert changes[1]["data"]["changes"] == {"timeout": {"from": None, "to": 5}}
    assert changes[0]["data"]["changes"]["secret"] == {"from": None, "to": "[hidden]"}
    bodies = b"".join(r.body for r in alerts.received).decode()
    assert secret not in bodies and rotated.get_json()["secret"] not in bodies
    assert "token-in-the-path/abc" not in bodies  # URLs masked as the audit log shows them
    # The changed sink itself subscribes to sink.config_changed, yet never gets its own.
    time.sleep(1)
    assert system_events(crm) == []


def test_nothing_is_stored_when_no_sink_subscribes(make_runtime):
    from gateway.publish import system_events as module

    runtime = make_runtime({"sinks": []})
    published = module.publish_system_event(runtime, "sink.circuit_opened", {"name": "crm", "type": "plain"},
                                            {"opened_at": "2026-01-15T10:32:05.120Z",
                                             "probe_at": "2026-01-15T10:32:35.120Z"})
    assert published is None
    assert runtime.redis.zcard(runtime.keys.events) == 0


def test_a_system_event_about_a_sink_is_routed_to_every_subscriber_but_that_sink(make_runtime, recording_sink):
    runtime = make_runtime({"sinks": [recording_sink.sink("crm", events=["sink.circuit_opened"]),
                                      recording_sink.sink("ops", events=["sink.circuit_opened"])]})
    sample = next(t for t in SYSTEM_EVENT_TYPES if t.name == "sink.circuit_opened").sample
    published = publish(runtime, Event.new("sink.circuit_opened", dict(sample)))
    assert published.sinks == ("ops",)  # the sample is about "crm"


def test_a_runtime_nobody_wired_reports_nothing_and_says_so_once(make_runtime, recording_sink, caplog):
    # The engine and the integration store sit below the publisher and report through
    # Runtime.reporter; a runtime built without the publish layer (a plain `rq worker`)
    # must say that its system events go nowhere rather than drop them silently.
    from gateway.publish import system_events as module
    from gateway.runtime import Runtime, UnwiredReporter

    wired = make_runtime({"sinks": [recording_sink.sink("ops", events=["sink.config_changed"])]})
    assert isinstance(wired.reporter, module.Reporter)
    bare = Runtime(wired.settings, wired.plugins, wired.redis_url)
    assert isinstance(bare.reporter, UnwiredReporter)
    entry = {"action": "update", "target": "sink:crm", "actor": "admin", "at": "2026-01-15T10:32:05Z", "changes": {}}
    with caplog.at_level("WARNING", logger="gateway.runtime"):
        bare.reporter.config_changed(entry, "plain")
        bare.reporter.config_changed(entry, "plain")
    assert bare.redis.zcard(bare.keys.events) == 0
    assert [r.getMessage() for r in caplog.records].count(
        "system events are not published by this process: its runtime has no reporter "
        "(build it through the web app, the CLI or gateway.testing)") == 1
    wired.reporter.config_changed(entry, "plain")
    assert wired.redis.zcard(wired.keys.events) == 1
