"""The console's 24-hour charts, from real deliveries to a local HTTP sink: an integration's
attempts per hour with p50/p95 latency (its hourly counters), and the Deliveries page's
filtered set. Server-rendered SVG, numbers in <title>."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from support.console import console_config, create_ticket
from support.plugins import PlainSinkPlugin
from support.servers import Answer, SinkServer

from gateway.delivery import hourly_stats


@pytest.fixture
def console(signed_in: Any, sink: SinkServer) -> Any:
    crm = {"name": "crm", "type": "plain", "url": sink.url, "events": ["ticket.created"], "retry_schedule": []}
    return signed_in(console_config([crm], failure_threshold=50), [PlainSinkPlugin()])


def deliver(client: Any, n: int) -> None:
    for i in range(n):
        create_ticket(client, f"Ticket {i}", deliver=True)


def titles(html: str, chart_id: str) -> list[str]:
    figure = html[html.index(f'id="{chart_id}"'):]
    figure = figure[:figure.index("</figure>")]
    return re.findall(r"<title[^>]*>([^<]*)</title>", figure)



def test_an_integration_card_charts_its_last_24_hours(console: Any, sink: SinkServer) -> None:
    sink.answer(Answer(status=500, body=b"down"))
    deliver(console, 3)
    page = console.get("/admin/integrations").text

    attempts = titles(page, "chart-crm-attempts")
    assert attempts[0] == "Attempts per hour. Last 24 hours: 2 delivered, 0 retrying, 1 failed"
    bars = attempts[1:]
    assert len(bars) == 24
    assert all(re.fullmatch(r"\d\d:00–\d\d:00 UTC: \d+ delivered, \d+ retrying, \d+ failed", b) for b in bars)
    hour = datetime.now(UTC)
    busy = [b for b in bars if not b.endswith(": 0 delivered, 0 retrying, 0 failed")]
    if hour.minute > 0:  # (all three in the current hour, unless the hour turned meanwhile)
        assert busy == [f"{hour:%H}:00–{(hour.hour + 1) % 24:02d}:00 UTC: 2 delivered, 0 retrying, 1 failed"]

    latency = titles(page, "chart-crm-latency")
    assert latency[0].startswith("Response time. Slowest hour")
    assert re.fullmatch(r".*UTC: p50 ≤ [\d.]+ m?s, p95 ≤ [\d.]+ m?s", latency[-1])
    assert latency[1].endswith("no attempts")


def test_a_new_integration_says_nothing_happened_yet(console: Any) -> None:
    page = console.get("/admin/integrations").text
    assert "Nothing in the last 24 hours." in page and "No attempts in the last 24 hours." in page
    assert "<svg" not in page


def test_the_deliveries_page_charts_the_filtered_set(console: Any, sink: SinkServer) -> None:
    sink.answer(Answer(status=500, body=b"down"))
    deliver(console, 3)
    everything = titles(console.get("/admin/deliveries").text, "chart-deliveries")
    assert everything[0].endswith("Last 24 hours: 2 delivered, 0 under way, 1 failed, 0 cancelled")
    failed = titles(console.get("/admin/deliveries?status=failed").text, "chart-deliveries")
    assert failed[0].endswith("Last 24 hours: 0 delivered, 0 under way, 1 failed, 0 cancelled")
    assert failed[-1].endswith("UTC: 0 delivered, 0 under way, 1 failed, 0 cancelled")


def test_the_hourly_counters_keep_a_latency_histogram(console: Any) -> None:
    deliver(console, 2)
    runtime = console.application.extensions["gateway"]
    hour = hourly_stats.last_hours(runtime, "crm")[-1]
    assert hour.delivered == 2 and sum(hour.latency.values()) == 2
    assert hour.p50 is not None and hour.p50 in hourly_stats.BOUNDS_MS


def test_percentiles_are_bucket_bounds() -> None:
    counts = {"10": 50, "100": 45, "1000": 4, "inf": 1}
    assert hourly_stats.percentile(counts, 0.5) == 10
    assert hourly_stats.percentile(counts, 0.95) == 100
    assert hourly_stats.percentile(counts, 1.0) == float("inf")
    assert hourly_stats.percentile({}, 0.5) is None
    assert [hourly_stats.bucket(v) for v in (None, 0.4, 5, 5.1, 60000, 60001)] == ["", "5", "5", "10", "60000", "inf"]
