"""A sink's hourly counters (keys.sink_stats, written by finish.lua) as a series: attempts
per UTC hour by outcome, and their latency.

Each finished attempt that sent a request also bumps one bucket of a latency histogram in
the same hash (``ms:<bound>``): a fixed set of bounds, so an hour costs at most a couple of
dozen small fields whatever the traffic, and p50/p95 come out as "at most <bound> ms" (the
bucket the percentile falls in), which is what a chart needs.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from gateway.storage.scripts import as_text

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
"""Upper bounds of the buckets, in ms; slower attempts go to :data:`OVERFLOW`."""
OVERFLOW = "inf"
PREFIX = "ms:"


def bucket(duration_ms: float | None) -> str:
    """The bucket name for an attempt that took ``duration_ms`` ("" for None: no request)."""
    if duration_ms is None:
        return ""
    index = bisect.bisect_left(BOUNDS_MS, duration_ms)
    return str(BOUNDS_MS[index]) if index < len(BOUNDS_MS) else OVERFLOW


def histogram(fields: Mapping[str, str | int]) -> dict[str, int]:
    """``{bucket: count}`` from a stats hash (other fields ignored)."""
    return {name[len(PREFIX):]: int(value) for name, value in fields.items()
            if name.startswith(PREFIX) and int(value or 0) > 0}


def merge(into: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Add ``more``'s counts to ``into`` (in place, returned)."""
    for name, count in more.items():
        into[name] = into.get(name, 0) + count
    return into


def percentile(counts: Mapping[str, int], fraction: float) -> float | None:
    """The bucket bound (ms) under which ``fraction`` of the attempts fall; None without
    attempts; ``inf`` when it is in the overflow bucket."""
    total = sum(counts.values())
    if total <= 0:
        return None
    needed = fraction * total
    seen = 0
    for bound in BOUNDS_MS:
        seen += counts.get(str(bound), 0)
        if seen >= needed:
            return float(bound)
    return float("inf")


OUTCOMES = ("delivered", "retrying", "failed")
HOURS = 24


@dataclasses.dataclass(frozen=True)
class Hour:
    """One UTC hour of a sink's attempts."""

    start: datetime
    delivered: int
    retrying: int
    failed: int
    latency: dict[str, int]
    """The latency histogram: ``{bucket bound: attempts}``."""

    @property
    def p50(self) -> float | None:
        """Median attempt duration (a bucket bound, ms), None without attempts."""
        return percentile(self.latency, 0.5)

    @property
    def p95(self) -> float | None:
        """95th percentile attempt duration (a bucket bound, ms), None without attempts."""
        return percentile(self.latency, 0.95)


def last_hours(runtime: Runtime, sink: str, now: datetime | None = None, hours: int = HOURS) -> list[Hour]:
    """``sink``'s last ``hours`` UTC hours, oldest first, the current one last (one round trip)."""
    current = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    with runtime.redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(runtime.keys.sink_stats(sink, start.strftime("%Y%m%d%H")))
        replies = pipe.execute()
    series = []
    for start, raw in zip(starts, replies, strict=True):
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        counts = {name: int(fields.get(name) or 0) for name in OUTCOMES}
        series.append(Hour(start, counts["delivered"], counts["retrying"], counts["failed"], histogram(fields)))
    return series
