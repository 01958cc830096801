"""The delivery engine end to end: real Redis, real local HTTP sinks, real worker processes.

Deadlines are generous "wait until X, fail after N s"; nothing asserts how fast things are.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table, write_config
from support.delivery import publish_tickets, shown
from support.plugins import PlainSinkPlugin
from support.processes import GatewayProcess, start_worker, wait_until
from support.servers import Answer, SinkServer

from gateway.delivery import delivery_log, sink_state
from gateway.signing import hex_signature


@pytest.fixture
def servers() -> Iterator[list[SinkServer]]:
    started: list[SinkServer] = []
    yield started
    for server in started:
        server.__exit__()


@pytest.fixture
def engine(redis_url: str, redis_client: Any, make_runtime: Any, tmp_path: Path, servers: list[SinkServer]):
    """engine(sinks, **delivery) -> (runtime, start_worker()) on a config written to disk."""
    procs: list[GatewayProcess] = []

    def build(sinks: list[dict[str, Any]], **delivery: Any) -> tuple[Any, Any]:
        config = engine_config(redis_url, tmp_path, sinks, **delivery)
        path = write_config(tmp_path / "gateway.toml", config)
        runtime = make_runtime(config, plugins=[PlainSinkPlugin()])

        def worker(*args: str) -> GatewayProcess:
            proc = start_worker(path, tmp_path / f"worker-{len(procs)}.log", *args)
            procs.append(proc)
            return proc

        return runtime, worker

    yield build
    for proc in procs:
        proc.stop()


def sink_server(servers: list[SinkServer], default: Answer | None = None) -> SinkServer:
    server = SinkServer(default).__enter__()
    servers.append(server)
    return server


def test_500_500_200_is_delivered_on_the_third_attempt_with_three_attempts_logged(engine, servers):
    server = sink_server(servers).answer(Answer(500, b"boom"), Answer(500, b"boom again"))
    runtime, worker = engine([sink_table("hook", server.url, retry_schedule=[0.2, 0.2], secret="s3cret")])
    worker()
    [delivery_id] = publish_tickets(runtime)

    found = wait_until(lambda: (d := shown(runtime, delivery_id))["status"] == "delivered" and d,
                       what="delivered")
    assert found["attempts"] == 3
    assert [a["status_code"] for a in found["attempt_log"]] == [500, 500, 200]
    assert [a["status"] for a in found["attempt_log"]] == ["retrying", "retrying", "delivered"]
    assert found["attempt_log"][0]["response_excerpt"] == "boom"
    assert found["attempt_log"][0]["error"]["code"] == "http_status"
    # Every attempt carried the same delivery id and a valid signature of the exact body.
    assert [r.headers["X-Webhook-Delivery"] for r in server.received] == [delivery_id] * 3
    for received in server.received:
        assert received.headers["X-Webhook-Signature"] == hex_signature(received.body, "s3cret")
    # The log never shows the signature or the secret.
    logged = json.dumps(found)
    assert hex_signature(server.received[0].body, "s3cret") not in logged and "s3cret" not in logged


def test_retry_after_on_429_is_honoured(engine, servers):
    server = sink_server(servers).answer(Answer(429, headers={"Retry-After": "2"}))
    runtime, worker = engine([sink_table("hook", server.url, retry_schedule=[0.1])])
    worker()
    [delivery_id] = publish_tickets(runtime)

    wait_until(lambda: shown(runtime, delivery_id)["status"] == "delivered", what="delivered")
    first, second = server.received
    assert second.at - first.at >= 2.0
    assert [a["status_code"] for a in shown(runtime, delivery_id)["attempt_log"]] == [429, 200]


def test_410_gone_fails_the_delivery_and_pauses_the_sink_until_resumed(engine, servers):
    server = sink_server(servers).answer(Answer(410, b"gone"))
    runtime, worker = engine([sink_table("hook", server.url, retry_schedule=[0.1, 0.1])])
    worker()
    [gone_id] = publish_tickets(runtime)
    wait_until(lambda: shown(runtime, gone_id)["status"] == "failed", what="failed")
    [state] = sink_state.sink_states(runtime)
    assert state["state"] == "paused" and "410" in state["paused_reason"]
    assert shown(runtime, gone_id)["attempts"] == 1  # no retries after 410

    [waiting_id] = publish_tickets(runtime)
    assert shown(runtime, waiting_id)["status"] == "pending"
    assert sink_state.sink_states(runtime)[0]["counts"]["queued"] == 1

    sink_state.resume(runtime, "hook")
    wait_until(lambda: shown(runtime, waiting_id)["status"] == "delivered", what="delivered after resume")
    assert server.count() == 2


def test_a_sink_that_does_not_answer_in_time_is_a_timeout_and_retried(engine, servers):
    server = sink_server(servers).answer(Answer(200, delay=3))
    runtime, worker = engine([sink_table("hook", server.url, timeout=0.5, retry_schedule=[0.2])])
    worker()
    [delivery_id] = publish_tickets(runtime)

    found = wait_until(lambda: (d := shown(runtime, delivery_id))["status"] == "delivered" and d,
                       what="delivered")
    first = found["attempt_log"][0]
    assert first["error"]["code"] == "timeout" and first["status_code"] is None
    assert first["status"] == "retrying"


def test_replay_sends_a_failed_delivery_again_with_the_same_id(engine, servers):
    server = sink_server(servers).answer(Answer(500))
    runtime, worker = engine([sink_table("hook", server.url, retry_schedule=[])])
    worker()
    [delivery_id] = publish_tickets(runtime)
    wait_until(lambda: shown(runtime, delivery_id)["status"] == "failed", what="failed")

    result = delivery_log.replay(runtime, [delivery_id])
    assert result.outcomes == {delivery_id: "queued"}
    found = wait_until(lambda: (d := shown(runtime, delivery_id))["status"] == "delivered" and d,
                       what="delivered after replay")
    assert [r.headers["X-Webhook-Delivery"] for r in server.received] == [delivery_id, delivery_id]
    assert found["replays"] == 1 and found["attempts"] == 2


def test_a_sink_answering_in_5_s_does_not_delay_another_sinks_deliveries(engine, servers):
    slow = sink_server(servers, Answer(200, delay=5))
    fast = sink_server(servers)
    runtime, worker = engine([sink_table("slow", slow.url, max_in_flight=4), sink_table("fast", fast.url)],
                             concurrency=16)
    worker()
    ids = publish_tickets(runtime, 20)
    slow_ids = [i for i in ids if shown(runtime, i)["sink"] == "slow"]

    wait_until(lambda: fast.count() == 20, what="all 20 fast deliveries")
    # The fast sink got everything while the slow one had not answered a single request.
    assert all(shown(runtime, i)["status"] == "pending" for i in slow_ids)
    assert slow.count() <= 4  # its in-flight cap


def test_a_killed_workers_in_flight_delivery_is_delivered_again_with_the_same_id(engine, servers):
    server = sink_server(servers).answer(Answer(200, delay=30))
    runtime, worker = engine([sink_table("hook", server.url, timeout=5)])
    first = worker()
    [delivery_id] = publish_tickets(runtime)
    wait_until(lambda: server.count() == 1, what="first attempt under way")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()

    worker()
    found = wait_until(lambda: (d := shown(runtime, delivery_id))["status"] == "delivered" and d,
                       timeout=60, what="delivered after the kill")
    assert [r.headers["X-Webhook-Delivery"] for r in server.received] == [delivery_id, delivery_id]
    assert found["attempts"] == 1  # the interrupted attempt never finished, so was never charged


def test_circuit_opens_after_n_failures_and_a_good_probe_closes_it(engine, servers):
    server = sink_server(servers, Answer(500))
    runtime, worker = engine([sink_table("hook", server.url, retry_schedule=[], failure_threshold=3,
                                         max_in_flight=1)], circuit_cooldown=5)
    ids = publish_tickets(runtime, 6)
    worker()
    wait_until(lambda: sink_state.sink_states(runtime)[0]["state"] in ("circuit_open", "half_open"),
               what="circuit open")
    assert server.count() == 3
    waiting = [i for i in ids if shown(runtime, i)["status"] == "pending"]
    assert len(waiting) == 3

    server.default = Answer(200)
    wait_until(lambda: all(shown(runtime, i)["status"] == "delivered" for i in waiting),
               what="the waiting deliveries delivered after the probe")
    [state] = sink_state.sink_states(runtime)
    assert state["state"] == "ok" and state["failure_streak"] == 0
    # Deferred while the circuit was open, not charged an attempt.
    assert all(shown(runtime, i)["attempts"] == 1 for i in waiting)
    assert state["counts"]["last_24h"] == {"delivered": 3, "retrying": 0, "failed": 3}
