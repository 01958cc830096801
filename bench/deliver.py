"""Delivery throughput: pre-loaded deliveries drained by ``gateway worker`` processes into
a bench sink; deliveries/s from the sink's first to its last arrival (so process start-up
is not counted, for the gateway and the plain rq baseline alike)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.procs import MemoryWatch
from bench.report import progress
from bench.stack import SECRET, SinkHandle, Stack, runtime_for, watch_drain
from gateway.events import Event
from gateway.publish.publisher import publish

WEB = "web"
"""The run's shared ``gateway web`` on :func:`one_sink_config`: receive, the backlog's turns,
end-to-end latency and fan-out's one-sink side all load this one server."""


def sink_table(name: str, sink: SinkHandle, **extra: Any) -> dict[str, Any]:
    """A ``[[sinks]]`` entry: a signed generic webhook to ``sink`` for ticket.created."""
    return {
        "name": name,
        "type": "generic_webhook",
        "url": sink.url,
        "secret": SECRET,
        "events": ["ticket.created"],
        **extra,
    }


def one_sink_config(stack: Stack, sink: SinkHandle) -> Path:
    """The configuration with one subscribed sink, ``fast`` (the same file every time, so
    every scenario that uses it shares the :data:`WEB` server)."""
    return stack.write_config("one-sink", [sink_table("fast", sink)])


def sample_ticket(index: int, subject: str = "Cannot export the monthly report") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "ticket_number": f"TKT-2026-{index + 1:03d}",
        "subject": subject,
        "message": "The export button does nothing since this morning; we need the report today.",
        "status": "new",
        "priority": "high",
        "category": None,
        "customer_email": "bench@example.com",
        "customer_name": "Bench Client",
        "source": "webhook",
        "created_at": "2026-01-01T00:00:00.000Z",
    }


def preload(config: Path, count: int) -> None:
    """Publish ``count`` ticket.created events through the gateway's own publisher (each
    with its pending deliveries, exactly as the receive endpoint writes them)."""
    runtime = runtime_for(config)

    def publish_one(index: int) -> None:
        publish(runtime, Event.new("ticket.created", {"ticket": sample_ticket(index)}))

    # Several threads overlap the round trips (the publisher is thread-safe: a pooled client).
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(publish_one, range(count)))
    finally:
        runtime.redis.close()


def drain_rate(
    stack: Stack,
    sink: SinkHandle,
    config: Path,
    count: int,
    workers: int,
    memory: MemoryWatch,
    timeout: float,
    worker_args: tuple[str, ...] = (),
    loader: Callable[[Path, int], None] | None = None,
) -> dict[str, Any]:
    """Pre-load ``count`` deliveries for ``sink`` (with ``loader``, default :func:`preload`),
    start ``workers`` worker processes and time the sink from its first to its ``count``-th
    distinct delivery."""
    stack.flush()
    sink.reset()
    (loader or preload)(config, count)
    progress(f"{count} deliveries pre-loaded; starting {workers} worker(s)")
    started = time.monotonic()
    procs = stack.start_workers(config, workers, extra=worker_args)
    for proc in procs:
        memory.watch(proc.pid)
    try:
        drain = watch_drain(stack, sink, count, procs, timeout)
        progress("all delivered; stopping")
    finally:
        memory.sample()
        stack.stop(*procs)
    return {
        "rps": drain.rps,
        "wall_s": round(time.monotonic() - started, 2),
        "duplicates": drain.duplicates,
        "cpu_us": drain.cpu_us,
    }


def deliver_vs_plain(
    stack: Stack, sink: SinkHandle, count: int, plain_count: int, memory: MemoryWatch, timeout: float
) -> dict[str, Any]:
    """``deliver_rps`` (2 gateway workers), ``plain_rq_rps`` (2 forking rq workers) and the ratio."""
    from bench.plain_rq import plain_rq_rps

    config = one_sink_config(stack, sink)
    ours = drain_rate(stack, sink, config, count, 2, memory, timeout)
    plain = plain_rq_rps(stack, sink, plain_count, 2, timeout)
    ratio = ours["rps"] / plain["plain_rq_rps"] if plain["plain_rq_rps"] else 0.0
    return {
        "deliver_rps": ours["rps"],
        "deliver_count": count,
        "deliver_wall_s": ours["wall_s"],
        "deliver_duplicates": ours["duplicates"],
        "deliver_cpu_us_per_delivery": ours["cpu_us"],
        **plain,
        "deliver_ratio": round(ratio, 1),
    }


SLOW_MAX_IN_FLIGHT = 50
"""The slow sink's per-sink in-flight cap: at 200 ms an answer, the default 10 caps a sink
at 50/s by design; 100/s needs at least 20 (set in the sink's config, as an operator would)."""


def slow_sink(
    stack: Stack, sink: SinkHandle, count: int, memory: MemoryWatch, timeout: float
) -> dict[str, Any]:
    """``slow_sink_rps``: one worker process against a sink answering in 200 ms."""
    config = stack.write_config("slow", [sink_table("slow", sink, max_in_flight=SLOW_MAX_IN_FLIGHT)])
    result = drain_rate(stack, sink, config, count, 1, memory, timeout)
    return {
        "slow_sink_rps": result["rps"],
        "slow_sink_cpu_us_per_delivery": result["cpu_us"],
        "slow_sink_count": count,
        "slow_sink_max_in_flight": SLOW_MAX_IN_FLIGHT,
    }
