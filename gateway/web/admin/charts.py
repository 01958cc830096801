"""Small server-rendered SVG charts of the last 24 hours: an integration's attempts per hour
(delivered / retrying / failed) with its p50 / p95 latency, and the Deliveries page's
filtered set per hour by status.

The numbers come from what the gateway keeps anyway: a sink's hourly counters
(:mod:`gateway.delivery.hourly_stats`) and the delivery log. This module works out the
geometry; ``admin/_charts.html`` draws it. Every bar and point carries a ``<title>`` with
its numbers (a tooltip on hover, read by screen readers), and each chart a text summary:
nothing needs JavaScript.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import render_template
from markupsafe import Markup

from gateway.delivery import hourly_stats
from gateway.web.admin.blueprint import bp, runtime, to_datetime

WIDTH = 480
HEIGHT = 120
TOP = 8
"""Room above the tallest bar."""
SLOT = WIDTH / hourly_stats.HOURS
BAR = SLOT - 4
CHART_ROWS = 2000
"""The Deliveries page charts at most this many of the filtered set's latest deliveries."""
# (series name, CSS class): the same colours as the status badges.
ATTEMPT_SERIES = (("delivered", "ok"), ("retrying", "warn"), ("failed", "bad"))
DELIVERY_SERIES = (("delivered", "ok"), ("under way", "warn"), ("failed", "bad"), ("cancelled", "muted"))
_UNDER_WAY = {"pending", "retrying", "waiting"}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One part of a stacked bar."""

    name: str
    css: str
    count: int
    y: float
    height: float


@dataclasses.dataclass(frozen=True)
class Bar:
    """One hour's stacked bar."""

    x: float
    label: str
    segments: list[Segment]

    @property
    def title(self) -> str:
        """The hour's numbers, for the bar's ``<title>``."""
        parts = ", ".join(f"{s.count} {s.name}" for s in self.segments)
        return f"{self.label}: {parts}"


@dataclasses.dataclass(frozen=True)
class Point:
    """One hour's latency percentiles (bucket bounds, ms) and where they are drawn."""

    x: float
    label: str
    p50: float | None
    p95: float | None
    y50: float | None
    y95: float | None

    @property
    def title(self) -> str:
        """The hour's percentiles, for the point's ``<title>``."""
        if self.p50 is None:
            return f"{self.label}: no attempts"
        return f"{self.label}: p50 ≤ {ms_text(self.p50)}, p95 ≤ {ms_text(self.p95)}"


@dataclasses.dataclass(frozen=True)
class StackedChart:
    """Counts per hour as stacked bars, with the totals of each series."""

    bars: list[Bar]
    peak: int
    totals: list[tuple[str, str, int]]
    """(series name, CSS class, total over the period)."""
    width: int = WIDTH
    height: int = HEIGHT
    bar_width: float = BAR

    @property
    def empty(self) -> bool:
        """Nothing happened in the period."""
        return self.peak == 0

    @property
    def summary(self) -> str:
        """The chart in words."""
        return "Last 24 hours: " + ", ".join(f"{total} {name}" for name, _, total in self.totals)


@dataclasses.dataclass(frozen=True)
class LatencyChart:
    """p50 / p95 attempt latency per hour, as two lines."""

    points: list[Point]
    peak: float
    width: int = WIDTH
    height: int = HEIGHT
    slot: float = SLOT

    @property
    def empty(self) -> bool:
        """No attempt in the period."""
        return not any(p.p50 is not None for p in self.points)

    def line(self, which: str) -> str:
        """The ``points`` attribute of a polyline (hours without attempts break nothing:
        the line joins the hours that had some)."""
        return " ".join(f"{p.x:.1f},{getattr(p, which):.1f}" for p in self.points if getattr(p, which) is not None)

    @property
    def summary(self) -> str:
        """The chart in words: the period's worst hour."""
        known = [p for p in self.points if p.p95 is not None]
        if not known:
            return "No attempts in the last 24 hours."
        worst = max(known, key=lambda p: p.p95 or 0)
        return f"Slowest hour {worst.label}: p95 ≤ {ms_text(worst.p95)}"


def ms_text(value: float | None) -> str:
    """A latency bound as people read it: ``250 ms``, ``2.5 s``, ``> 60 s``."""
    if value is None:
        return "—"
    if math.isinf(value):
        return f"> {hourly_stats.BOUNDS_MS[-1] // 1000} s"
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:g} ms"


def hour_label(start: datetime) -> str:
    """``14:00–15:00 UTC``."""
    return f"{start:%H}:00–{(start + timedelta(hours=1)):%H}:00 UTC"


def stacked(hours: Sequence[datetime], counts: Sequence[dict[str, int]],
            series: Sequence[tuple[str, str]]) -> StackedChart:
    """Stacked bars of ``counts`` (one mapping per hour of ``hours``, by series name)."""
    peak = max((sum(c.get(name, 0) for name, _ in series) for c in counts), default=0)
    scale = (HEIGHT - TOP) / peak if peak else 0.0
    bars = []
    for index, (start, count) in enumerate(zip(hours, counts, strict=True)):
        y = float(HEIGHT)
        segments = []
        for name, css in series:
            height = count.get(name, 0) * scale
            y -= height
            segments.append(Segment(name, css, count.get(name, 0), round(y, 2), round(height, 2)))
        bars.append(Bar(round(index * SLOT + 2, 2), hour_label(start), segments))
    totals = [(name, css, sum(c.get(name, 0) for c in counts)) for name, css in series]
    return StackedChart(bars, peak, totals)


def latency(series: Sequence[hourly_stats.Hour]) -> LatencyChart:
    """p50 / p95 lines of a sink's hours; the overflow bucket is drawn at the top."""
    finite = [v for h in series for v in (h.p50, h.p95) if v is not None and not math.isinf(v)]
    peak = max(finite, default=0.0) or 1.0

    def y(value: float | None) -> float | None:
        if value is None:
            return None
        return round(HEIGHT - (HEIGHT - TOP) * min(value, peak) / peak, 2) if not math.isinf(value) else float(TOP)

    points = [Point(round(i * SLOT + SLOT / 2, 2), hour_label(h.start), h.p50, h.p95, y(h.p50), y(h.p95))
              for i, h in enumerate(series)]
    return LatencyChart(points, peak)


def sink_charts(name: str, now: datetime | None = None) -> tuple[StackedChart, LatencyChart]:
    """An integration's last 24 hours: attempts per hour by outcome, and latency."""
    series = hourly_stats.last_hours(runtime(), name, now)
    counts = [{"delivered": h.delivered, "retrying": h.retrying, "failed": h.failed} for h in series]
    return stacked([h.start for h in series], counts, ATTEMPT_SERIES), latency(series)


def deliveries_chart(rows: Iterable[dict[str, Any]], now: datetime | None = None) -> StackedChart:
    """Deliveries created in each of the last 24 hours, by their status now."""
    current = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hourly_stats.HOURS - 1)
    hours = [first + timedelta(hours=h) for h in range(hourly_stats.HOURS)]
    counts: list[dict[str, int]] = [{} for _ in hours]
    for row in rows:
        created = to_datetime(row.get("created_at"))
        if created is None or created < first:
            continue
        index = min(int((created - first).total_seconds() // 3600), len(hours) - 1)
        status = row.get("status") or ""
        name = "under way" if status in _UNDER_WAY else status
        counts[index][name] = counts[index].get(name, 0) + 1
    return stacked(hours, counts, DELIVERY_SERIES)


@bp.app_template_filter("ms")
def ms_filter(value: float | None) -> str:
    """:func:`ms_text` in templates."""
    return ms_text(value)


@bp.app_template_global("sink_chart")
def sink_chart(name: str) -> Markup:
    """An integration's 24-hour charts, for any page that shows the integration (its card
    or its own page): ``{{ sink_chart(sink.name) }}``."""
    attempts, times = sink_charts(name)
    return Markup(render_template("admin/_sink_chart.html", name=name, attempts=attempts, latency=times))
