"""Ordered delivery's cost: the same load -- N tickets x 3 events (created, updated,
resolved), pre-loaded -- drained by 2 ``gateway worker`` processes into the fast sink, once
with ``ordering = "per_ticket"`` and once without; and whether the ordered run kept each
ticket's order, counted at the sink from the events' timestamps and ticket ids.

Each ticket's events are published in order with timestamps 1 ms apart, so at the sink an
event that arrives after a later one of its ticket (an older timestamp than one already
seen for that ticket) is a violation (``bench/sink.py`` counts them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.deliver import drain_rate, sample_ticket, sink_table
from bench.procs import MemoryWatch
from bench.stack import SinkHandle, Stack, runtime_for
from gateway.events import Event, utc_now
from gateway.publish.publisher import publish

LIFECYCLE = ("ticket.created", "ticket.updated", "ticket.resolved")


def preload_lifecycles(config: Path, count: int) -> None:
    """Publish ``count`` // 3 tickets' three events, each ticket's in order (8 tickets at a
    time, so tickets interleave as they would in production)."""
    runtime = runtime_for(config)
    start = utc_now()

    def one_ticket(index: int) -> None:
        ticket = sample_ticket(index)
        for step, name in enumerate(LIFECYCLE):
            at = start + timedelta(milliseconds=step)
            publish(runtime, Event.new(name, {"ticket": {**ticket, "status": name.rsplit(".", 1)[1]}}, at=at))

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(one_ticket, range(count // len(LIFECYCLE))))
    finally:
        runtime.redis.close()


def ordered_vs_unordered(
    stack: Stack, sink: SinkHandle, tickets: int, memory: MemoryWatch, timeout: float, rounds: int = 1
) -> dict[str, Any]:
    """``ordered_deliver_rps``, ``ordered_ratio`` (ordered / unordered, same load) and
    ``ordered_violations`` (0 is the only right answer). With ``rounds`` 2 the runs go
    unordered, ordered, ordered, unordered, so a change in what else the machine does hits
    both alike; the rates are the means."""
    count = tickets * len(LIFECYCLE)
    runs: dict[str, list[dict[str, Any]]] = {"none": [], "per_ticket": []}
    sequence = ("none", "per_ticket", "per_ticket", "none") if rounds > 1 else ("none", "per_ticket")
    for ordering in sequence:
        table = sink_table("fast", sink, events=list(LIFECYCLE), ordering=ordering)
        config = stack.write_config(f"ordered-{ordering}", [table])
        run = drain_rate(stack, sink, config, count, 2, memory, timeout, loader=preload_lifecycles)
        run["violations"] = sink.stats()["order_violations"]
        runs[ordering].append(run)

    def mean(ordering: str) -> float:
        return round(sum(r["rps"] for r in runs[ordering]) / len(runs[ordering]), 1)

    ordered, unordered = mean("per_ticket"), mean("none")
    return {
        "ordered_tickets": tickets,
        "ordered_count": count,
        "ordered_deliver_rps": ordered,
        "unordered_deliver_rps": unordered,
        "ordered_ratio": round(ordered / unordered, 2) if unordered else 0.0,
        "ordered_violations": sum(r["violations"] for r in runs["per_ticket"]),
        "unordered_violations": sum(r["violations"] for r in runs["none"]),
        "ordered_duplicates": sum(r["duplicates"] for r in runs["per_ticket"]),
        "ordered_cpu_us_per_delivery": runs["per_ticket"][-1]["cpu_us"],
        "unordered_cpu_us_per_delivery": runs["none"][-1]["cpu_us"],
    }
