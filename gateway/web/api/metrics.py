"""``GET /metrics`` for Prometheus: the counters of every process on this machine, and
backlog gauges read from Redis at scrape time."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app, request

from gateway.errors import ApiError
from gateway.metrics import MULTIPROC_ENV, multiprocess_enabled
from gateway.web.auth import bearer_token

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from gateway.runtime import Runtime

log = logging.getLogger("gateway.metrics")
bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus metrics (text exposition format; OpenMetrics when the scraper asks).
    ---
    get:
      tags: [operations]
      summary: Prometheus metrics
      description: >-
        Counters and histograms merged across every gunicorn and worker process on this
        machine, plus backlog gauges read from Redis at scrape time. When `gateway.metrics_token`
        is set, send it as `Authorization: Bearer <metrics_token>` (Prometheus' `authorization`
        scrape option).
      security: []
      responses:
        200:
          description: Metrics in the Prometheus text format.
          content:
            text/plain:
              schema: {type: string}
        401: Unauthorized
        403: Forbidden
        503:
          description: The metrics cannot be read right now (Redis being down is not a reason).
          content:
            application/json:
              schema: ErrorSchema
    """
    runtime = current_app.extensions["gateway"]
    _check_metrics_token(runtime.settings.metrics_token)
    try:
        body, content_type = render(runtime, request.headers.get("Accept"))
    except Exception:  # e.g. a damaged file in the metrics directory
        log.exception("metrics: the scrape failed")
        raise ApiError(503, "metrics_unavailable", "The metrics cannot be read right now; see the server "
                       "log.", headers={"Retry-After": "15"}) from None
    return Response(body, content_type=content_type)


def _check_metrics_token(expected: str | None) -> None:
    """With a metrics_token configured: 401 without a bearer token, 403 with another one."""
    if expected is None:
        return
    given = bearer_token()
    if not given:
        raise ApiError(401, "unauthorized", "This gateway's metrics need its metrics token: send "
                       "'Authorization: Bearer <metrics_token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway-metrics"'})
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "The metrics token is not valid.")


class BacklogCollector:
    """Gauges read from Redis at scrape time, for every configured sink, in one round trip.

    ``gateway_queue_depth``: deliveries ready to be attempted now; ``gateway_deliveries_in_flight``:
    being attempted; ``gateway_circuit_open`` and ``gateway_sink_paused`` (0/1) by sink;
    ``gateway_open_circuits`` (a count) and ``gateway_retry_backlog`` (rq's scheduled jobs: retries
    wait there for their time). When Redis does not answer, only ``gateway_redis_up 0`` is
    reported: a scrape never fails because of it.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        # Registering must not touch Redis; an empty description skips that collect() call.
        return []

    def collect(self) -> Iterator[Metric]:
        import redis
        from prometheus_client.metrics_core import GaugeMetricFamily

        up = GaugeMetricFamily("gateway_redis_up", "1 when Redis answered this scrape.")
        try:
            rows, scheduled = self._read()
        except redis.RedisError as exc:
            log.warning("metrics: redis unavailable during scrape: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families = {
            "queue_depth": GaugeMetricFamily(
                "gateway_queue_depth", "Deliveries ready to be attempted now, by sink.", labels=["sink"]),
            "in_flight": GaugeMetricFamily(
                "gateway_deliveries_in_flight", "Deliveries being attempted now, by sink.", labels=["sink"]),
            "circuit_open": GaugeMetricFamily(
                "gateway_circuit_open", "1 while the sink's circuit breaker defers its deliveries.",
                labels=["sink"]),
            "paused": GaugeMetricFamily(
                "gateway_sink_paused", "1 while the sink is paused.", labels=["sink"]),
        }
        open_circuits = 0
        for sink, values in rows.items():
            for key, family in families.items():
                family.add_metric([sink], values[key])
            open_circuits += values["circuit_open"]
        yield from families.values()
        total = GaugeMetricFamily("gateway_open_circuits", "Sinks whose circuit breaker is open.")
        total.add_metric([], open_circuits)
        yield total
        backlog = GaugeMetricFamily(
            "gateway_retry_backlog", "Delayed jobs waiting in rq's scheduled registry: retries at their "
            "next retry time (and wake-ups of sinks whose circuit is open).")
        backlog.add_metric([], scheduled)
        yield backlog

    def _read(self) -> tuple[dict[str, dict[str, int]], int]:
        from rq.registry import ScheduledJobRegistry

        runtime = self.runtime
        keys = runtime.keys
        sinks = list(runtime.refresh().configs)
        now_ms = int(time.time() * 1000)
        scheduled_key = ScheduledJobRegistry(queue=runtime.queue).key
        with runtime.redis.pipeline(transaction=False) as pipe:
            for sink in sinks:
                pipe.llen(keys.ready(sink))
                pipe.zcard(keys.inflight(sink))
                pipe.hmget(keys.sink_state(sink), "paused", "circuit_open_until")
            pipe.zcard(scheduled_key)
            replies = pipe.execute()
        rows: dict[str, dict[str, int]] = {}
        for index, sink in enumerate(sinks):
            depth, in_flight, (paused, open_until) = replies[index * 3:index * 3 + 3]
            rows[sink] = {
                "queue_depth": int(depth),
                "in_flight": int(in_flight),
                "circuit_open": int(bool(open_until) and float(open_until) > now_ms),
                "paused": int(paused in (b"1", "1")),
            }
        return rows, int(replies[-1])


def scrape_registry(runtime: Runtime) -> CollectorRegistry:
    """A registry holding everything one scrape reports: the merged multiprocess files (or
    this process's own metrics) plus the Redis backlog gauges."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_enabled():
        # Recreated if it was removed, so that a scrape still answers.
        Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(runtime.metrics.registry))
    registry.register(BacklogCollector(runtime))
    return registry


class _Forward:
    """Exposes another registry's metrics through this one (single-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return iter(self.source.collect())


def render(runtime: Runtime, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition body and its content type for a scrape (OpenMetrics when asked)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(scrape_registry(runtime)), content_type
