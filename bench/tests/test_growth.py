"""The growth scenarios' own logic (bench/growth.py, bench/raw_post.py): what they count and
how they turn samples into the figures. Nothing here is timed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from bench import growth, raw_post
from bench.procs import Processes
from bench.stack import SECRET
from bench.tests.test_harness import start_sink
from gateway.publish.schemas import TicketCreateData
from gateway.signing import verify_hex_signature


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with Processes(tmp_path) as running:
        yield running


def test_raw_posts_each_carry_their_own_delivery_id_so_the_sink_counts_all(procs: Processes) -> None:
    sink = start_sink(procs)
    assert raw_post.post_loop(sink.url, 25, "a") == 25
    assert raw_post.post_loop(sink.url, 5, "b") == 5
    stats = sink.stats()
    assert (stats["requests"], stats["deliveries"], stats["duplicates"]) == (30, 30, 0)


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the loop expects
    seen: ClassVar[list[tuple[bytes, dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((body, dict(self.headers)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_raw_posts_are_the_generic_webhooks_signed_envelope() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    try:
        assert raw_post.post_loop(f"http://127.0.0.1:{server.server_address[1]}/hook", 3, "t") == 3
    finally:
        server.shutdown()
        server.server_close()
    ids = [headers["X-Webhook-Delivery"] for _, headers in _Recorder.seen]
    assert ids == ["t-0", "t-1", "t-2"]
    for body, headers in _Recorder.seen:
        assert verify_hex_signature(body, headers["X-Webhook-Signature"], [SECRET])
        envelope = json.loads(body)
        assert envelope["event"] == headers["X-Webhook-Event"] == "ticket.created"
        assert set(envelope["data"]["ticket"]) >= {"id", "subject", "message", "status"}


def test_the_bytes_scenarios_tickets_pass_the_receive_schema_with_a_400_byte_message() -> None:
    loaded = TicketCreateData().load(growth.receive_data(7))
    assert 380 <= len(loaded["message"]) <= 420
    assert loaded["subject"].endswith("#7")


def test_a_ratio_of_a_figure_not_measured_is_none_not_zero() -> None:
    assert growth.ratio(450.0, 900.0) == 0.5
    assert growth.ratio(None, 900.0) is None
    assert growth.ratio(450.0, 0.0) is None
    assert growth.ratio(2.0, 3.0, digits=2) == 0.67


def test_retention_growth_is_the_end_over_one_period_above_the_baseline() -> None:
    baseline = 1_000
    # One period at t=2 s (+1,000 bytes), a saw-tooth around +1,100 afterwards.
    samples = [(0.0, 1_000), (1.0, 1_500), (2.0, 2_000), (4.0, 2_200), (6.0, 2_000), (8.0, 2_100),
               (9.0, 2_300), (10.0, 2_000)]
    # The last 2 s: 2,100, 2,300, 2,000 -> median 2,100 -> +1,100 over +1,000.
    assert growth.growth_ratio(samples, baseline, one_period=2.0, end_window=2.0) == 1.1
    # A store that keeps everything: ten periods' growth over one.
    growing = [(float(t), baseline + 100 * t) for t in range(21)]
    assert growth.growth_ratio(growing, baseline, one_period=2.0, end_window=0.0) == 10.0
    with pytest.raises(ValueError, match="no growth"):
        growth.growth_ratio([(0.0, 900), (1.0, 1_000)], baseline, 1.0, 1.0)
    with pytest.raises(ValueError, match="no samples"):
        growth.growth_ratio([], baseline, 1.0, 1.0)


def test_paced_calls_each_index_once_in_order_of_ticks() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def action(index: int) -> None:
        with lock:
            seen.append(index)

    done = growth.paced(0.3, rate=100, action=action, tick=0.1)
    assert done == len(seen) and done % 10 == 0 and done >= 10
    assert sorted(seen) == list(range(done))
