"""Receive->delivered latency: paced, signed ticket creates through ``gateway web`` into
``gateway worker`` processes and on to a bench sink. Each ticket's subject carries its send
time; the sink subtracts it from the arrival time (one machine, one clock)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import load
from bench.deliver import WEB, one_sink_config, sink_table
from bench.procs import MemoryWatch
from bench.report import progress
from bench.stack import SECRET, SinkHandle, Stack

WORKERS = 2


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _connections(rate: float) -> int:
    # The schedule sets the rate; connections only have to cover the requests in flight
    # (rate x answer time), and answers slow down a lot on a busy 2-core machine.
    return max(4, min(64, math.ceil(rate / 4)))


def paced_latencies(
    stack: Stack,
    config: Path,
    measured: SinkHandle,
    rate: float,
    seconds: float,
    memory: MemoryWatch,
    timeout: float = 120,
    server: str = WEB,
) -> dict[str, Any]:
    """Send ``rate`` creates/s for ``seconds`` s (after a short warm-up) to the ``gateway
    web`` named ``server`` on ``config`` (shared with other scenarios when they use the same
    name) and return the latencies ``measured`` saw, in ms, with the achieved send rate."""
    stack.flush()
    # The workers start while the web server does: their start-ups overlap.
    workers = stack.start_workers(config, WORKERS)
    url = stack.serve({server: stack.web_command(config)})[server].url
    progress(f"web and {WORKERS} workers started; warming up")
    for proc in workers:
        memory.watch(proc.pid)
    try:
        connections = _connections(rate)
        measured.reset()
        warm = load.paced_creates(url, SECRET, rate, 1, connections)
        measured.wait_for(warm.ok, timeout, workers)
        # wrk stops counting at its deadline, so a few more tickets than it counted may be on
        # their way: the record is cleared once every stored ticket has reached the sink.
        assert stack.redis is not None
        measured.wait_for(int(stack.redis.zcard("gw:tickets")), timeout, workers)
        measured.reset()
        progress(f"sending {rate:.0f} creates/s for {seconds:.0f}s")
        sent = load.paced_creates(url, SECRET, rate, seconds, connections)
        if sent.status_errors or sent.errors:
            raise RuntimeError(
                f"receive answered {sent.status_errors} non-2xx and {sent.errors} socket errors"
            )
        progress(f"sent {sent.ok}; waiting for the sink")
        measured.wait_for(sent.ok, timeout, workers)
        progress("all delivered; stopping")
        latencies = measured.stats()["latencies_ms"]
    finally:
        memory.sample()
        # A worker waits for its in-flight attempts when stopped; the dead sink's never end.
        # The web server stays up for the scenarios that share it (stopped with the run).
        stack.stop(*workers, timeout=1)
    return {"latencies": latencies, "sent": sent.ok, "rate": round(sent.ok / sent.duration_s, 1)}


def isolation(
    stack: Stack, healthy: SinkHandle, dead: SinkHandle, rate: float, seconds: float, memory: MemoryWatch
) -> dict[str, Any]:
    """``isolation_p99_ms``: the healthy sink's p99 while a sink subscribed to the same
    events never answers."""
    config = stack.write_config("isolation", [sink_table("healthy", healthy), sink_table("dead", dead)])
    dead.reset()
    result = paced_latencies(stack, config, healthy, rate, seconds, memory, server="web-isolation")
    dead_requests = dead.counts()["requests"]
    return {
        "isolation_p99_ms": round(percentile(result["latencies"], 99), 1),
        "isolation_p50_ms": round(percentile(result["latencies"], 50), 1),
        "isolation_rate": result["rate"],
        "isolation_events": result["sent"],
        "isolation_dead_sink_requests": dead_requests,
    }


def end_to_end(
    stack: Stack, sink: SinkHandle, rate: float, seconds: float, memory: MemoryWatch
) -> dict[str, Any]:
    """``e2e_p50_ms`` / ``e2e_p99_ms`` at ``rate`` (half the measured maximum)."""
    result = paced_latencies(stack, one_sink_config(stack, sink), sink, rate, seconds, memory)
    return {
        "e2e_p50_ms": round(percentile(result["latencies"], 50), 1),
        "e2e_p99_ms": round(percentile(result["latencies"], 99), 1),
        "e2e_target_rate": round(rate, 1),
        "e2e_rate": result["rate"],
        "e2e_events": result["sent"],
    }
