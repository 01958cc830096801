"""Tests of the bench's own parts (run with ``python -m pytest bench/tests -q``): a
benchmark that miscounts or mis-signs reports numbers nobody should believe."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from bench import load, report
from bench.latency import percentile
from bench.procs import Processes, read_port
from bench.stack import SECRET, SinkHandle, Stack
from gateway.signing import verify_hex_signature

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (bench/setup.sh)")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path) as running:
        yield running


def start_sink(procs: Processes, *flags: str) -> SinkHandle:
    from bench.procs import PYTHON

    proc = procs.start("sink", [PYTHON, "-m", "bench.sink", *flags], capture=True)
    return SinkHandle("t", f"http://127.0.0.1:{read_port(proc)}/hook", proc)


def test_sink_counts_each_delivery_once_and_turns_send_stamps_into_latencies(procs: Processes) -> None:
    sink = start_sink(procs)
    sent_us = time.time_ns() // 1000
    stamped = json.dumps({"data": {"ticket": {"subject": f"bench {sent_us}"}}}, separators=(",", ":"))
    with requests.Session() as session:  # keep-alive, as the gateway's pooled client does
        for delivery_id, body in (("d1", "{}"), ("d1", "{}"), ("d2", stamped)):
            answer = session.post(
                sink.url, data=body, headers={"X-Webhook-Delivery": delivery_id}, timeout=10
            )
            assert (answer.status_code, answer.text) == (200, "ok")
    stats = sink.stats()
    assert (stats["requests"], stats["deliveries"], stats["duplicates"]) == (3, 2, 1)
    assert len(stats["latencies_ms"]) == 1 and stats["latencies_ms"][0] >= 0
    assert stats["first"] <= stats["last"]
    sink.reset()
    assert sink.counts()["deliveries"] == 0


def test_delayed_sink_still_answers_every_request_in_order(procs: Processes) -> None:
    sink = start_sink(procs, "--delay", "0.05")
    with requests.Session() as session:
        answers = [session.post(sink.url, data=str(i), timeout=10) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sink.counts()["deliveries"] == 3


def test_hanging_sink_records_the_request_but_never_answers(procs: Processes) -> None:
    sink = start_sink(procs, "--hang")
    with pytest.raises(requests.Timeout):
        requests.post(sink.url, data="{}", headers={"X-Webhook-Delivery": "d1"}, timeout=0.5)
    assert sink.counts()["deliveries"] == 1


def _load_the_sink(procs: Processes, tmp_path: Path, duration: float) -> tuple[SinkHandle, load.WrkResult]:
    """A sink, and one wrk turn of ``duration`` seconds posting a small body to it."""
    sink = start_sink(procs)
    body = tmp_path / "body.json"
    body.write_text('{"hello": "world"}')
    return sink, load.post_load(sink.url, body, None, connections=4, duration=duration)


@needs_wrk
def test_wrk_load_against_the_sink_is_counted_by_both(procs: Processes, tmp_path: Path) -> None:
    sink, result = _load_the_sink(procs, tmp_path, 1)
    assert result.requests > 0 and result.status_errors == 0 and result.errors == 0
    # wrk stops counting at its deadline; requests still in flight then reach the sink anyway.
    assert sink.counts()["deliveries"] >= result.requests


@needs_wrk
def test_a_turn_under_a_second_ends_early_and_reports_the_time_it_ran(procs: Processes, tmp_path: Path) -> None:
    sink, result = _load_the_sink(procs, tmp_path, 0.25)
    # wrk's -d takes whole seconds: a turn left to it would run (and report) a full second.
    assert 0 < result.duration_s < 1
    assert result.requests > 0 and result.status_errors == 0 and result.errors == 0
    assert sink.counts()["deliveries"] >= result.requests


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[bytes, str | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((body, self.headers.get("X-Webhook-Signature")))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@needs_wrk
def test_paced_creates_are_valid_signed_tickets_stamped_with_their_send_time() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    before_us = time.time_ns() // 1000
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/receive"
        result = load.paced_creates(url, "s3cret", rate=20, duration=1, connections=2)
    finally:
        server.shutdown()
        server.server_close()
    assert result.requests > 0 and result.status_errors == 0
    bodies = list(_Recorder.seen)
    stamps = []
    for body, signature in bodies:
        assert verify_hex_signature(body, signature, ["s3cret"])
        assert signature == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        data = json.loads(body)
        assert data["event"] == "ticket.create"
        word = data["data"]["subject"].split()[1]
        if word.isdigit():
            stamps.append(int(word))
    # Connections' first requests leave at connect time, in a burst: not stamped, not measured.
    assert 1 <= len(bodies) - len(stamps) <= 2
    assert stamps and all(before_us <= stamp <= time.time_ns() // 1000 for stamp in stamps)


def test_wrk_summary_is_parsed() -> None:
    output = (
        'Running 1s test\nBENCH_JSON {"requests":1000,"duration_us":2000000,"connect_errors":0,'
        '"read_errors":1,"write_errors":0,"status_errors":10,"timeouts":2,"latency_p50_us":1500,'
        '"latency_p99_us":9000}\n'
    )
    result = load.parse_output(output)
    assert (result.requests, result.errors, result.status_errors) == (1000, 3, 10)
    assert result.rps == pytest.approx(495.0)
    assert (result.latency_p50_ms, result.latency_p99_ms) == (1.5, 9.0)
    with pytest.raises(RuntimeError, match="no summary"):
        load.parse_output("wrk: connection refused")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_bench_configs_load_as_gateway_configs(tmp_path: Path) -> None:
    from gateway.config import load_config

    stack = Stack(tmp_path)  # not started: writing a config needs no Redis
    sink = {"name": "fast", "type": "generic_webhook", "url": "http://127.0.0.1:9/hook",
            "events": ["ticket.created"], "secret": 'a"b\\c', "max_in_flight": 50}
    settings = load_config(stack.write_config("t", [sink], delivery={"timeout": 2.5}))
    assert (settings.secret, settings.redis_url) == (SECRET, stack.redis_url)
    assert settings.delivery.timeout == 2.5 and settings.delivery.allow_private_networks is True
    (loaded,) = settings.sinks
    assert (loaded.name, loaded.max_in_flight, loaded.secrets) == ("fast", 50, ('a"b\\c',))


def test_results_table_and_verdicts_cover_every_key() -> None:
    results = {key: None for key in report.REQUIRED_KEYS}
    results.update({"receive_ratio": 0.8, "deliver_rps": 900.0, "e2e_p99_ms": 12.0})
    verdicts = report.verdicts(results)
    assert verdicts["receive_ratio"] is True
    assert verdicts["deliver_rps"] is False
    assert verdicts["e2e_p99_ms"] is True
    assert verdicts["worker_rss_mb"] is None
    text = report.table(results)
    for key in report.REQUIRED_KEYS:
        assert f"`{key}`" in text
    assert "**no**" in text


def test_profile_summary_counts_own_time_by_library() -> None:
    from bench.profile import summarize

    collapsed = "\n".join(
        [
            "process 1;main (gateway/cli.py);publish (gateway/bus.py);read (redis/_parsers/socket.py) 6",
            "process 1;main (gateway/cli.py);load (marshmallow/schema.py) 3",
            "process 1;main (gateway/cli.py) 1",
        ]
    )
    text = summarize(collapsed)
    assert text.startswith("10 samples")
    assert " 60.0%  redis-py" in text
    assert " 30.0%  marshmallow" in text
    assert " 10.0%  gateway (ours)" in text
    assert "100.0%  main (gateway/cli.py)" in text
    assert summarize("") == "no samples\n"


def test_costs_measures_every_part_of_a_receive() -> None:
    from bench.costs import measure

    costs = measure(count=20)
    assert costs["receive: whole request (WSGI)"] > costs["hello: whole request (WSGI)"] > 0
    parts = [name for name in costs if name.startswith("  ")]
    assert len(parts) >= 6 and all(costs[name] > 0 for name in parts)


@needs_wrk
def test_a_run_writes_every_key_even_for_the_scenarios_it_skips(tmp_path: Path) -> None:
    from bench.__main__ import main

    output = tmp_path / "results.json"
    assert main(["--quick", "--only", "sink", "--output", str(output)]) == 0
    results = json.loads(output.read_text())
    assert set(report.REQUIRED_KEYS) <= set(results)
    assert all(results[key] is None for key in report.REQUIRED_KEYS)
    assert results["sink_capacity_rps"] > 0
    assert results["context"]["machine"]["cores"] >= 1 and results["errors"] == {}


def test_the_floor_server_does_the_receive_write_and_nothing_else(tmp_path: Path) -> None:
    from bench.stack import WEB_WORKERS, Stack

    with Stack(tmp_path) as stack:
        config = stack.write_config("floor", [{"name": "fast", "type": "generic_webhook",
                                                "url": "http://127.0.0.1:9/hook", "events": ["ticket.created"]}])
        url, _ = stack.start_floor(config)
        assert stack.redis is not None
        assert stack.redis.zcard("gw:tickets") == 0  # the start-up probe (a GET) wrote nothing
        for _ in range(3):
            answer = requests.post(url, data=b"{}", timeout=10)
            assert answer.status_code == 201
        # publish.lua ran each time: a new ticket number, a pending delivery on the ready list,
        # for the ticket each web worker built at start-up (which worker answers is the
        # kernel's choice: one ticket or one per worker).
        (seq_key,) = stack.redis.keys("gw:ticket_seq:*")
        assert int(stack.redis.get(seq_key)) == 3
        assert 1 <= stack.redis.zcard("gw:tickets") <= WEB_WORKERS
        assert stack.redis.llen("gw:ready:fast") == 3


def test_servers_are_shared_by_name_and_a_name_keeps_its_command(tmp_path: Path) -> None:
    with Stack(tmp_path) as stack:
        first = stack.serve({"hello": stack.hello_command()})["hello"]
        both = stack.serve({"hello": stack.hello_command(), "hello-2": stack.hello_command()})
        assert both["hello"].proc is first.proc  # reused, not started again
        assert both["hello-2"].proc is not first.proc
        for server in both.values():
            assert requests.post(server.url, data=b"{}", timeout=10).status_code == 201
        config = stack.write_config("floor", [])
        with pytest.raises(ValueError, match="server hello runs"):
            stack.serve({"hello": stack.floor_command(config)})
        stack.stop(first.proc)
        # Once stopped, the name starts a new process.
        assert stack.serve({"hello": stack.hello_command()})["hello"].proc is not first.proc


class _Outer:
    def run(self) -> int:
        return _inner() + len("ab")


def _inner() -> int:
    return sum([1, 2])


def test_engine_profile_counts_each_call_under_the_innermost_part(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import engine_profile

    monkeypatch.setattr(engine_profile, "PARTS", {"_Outer.run": "outer", "_inner": "inner"})
    counter = engine_profile._CallCounter()
    counter.start()
    _Outer().run()
    counter.stop()
    # The call of run and its len(): outer; the call of _inner and its sum(): inner, not outer.
    assert counter.counts["outer"] == 2
    assert counter.counts["inner"] == 2
