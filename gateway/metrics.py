"""Prometheus metrics: what the gateway counts, and how a scrape is rendered.

Counters and histograms are recorded where things happen (the ``event_published`` and
``delivery_attempted`` hooks, and every HTTP request). Gauges that describe the backlog
(queue depth, retry backlog, in flight, open circuits) are *not* recorded: they are read
from Redis at scrape time by :class:`BacklogCollector`, so they are right whichever
process answers the scrape and however many machines run workers.

Several processes (gunicorn workers, ``gateway worker`` processes) share one set of
numbers through prometheus_client's multiprocess mode: each process writes its own
memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` and a scrape merges them.
``gateway run`` calls :func:`prepare_multiprocess_dir` before it starts any child. The
environment variable must be set before a process creates its first metric, which is
why the metrics below are built lazily, on first use.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from gateway.events import Event
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_SUBDIR = "metrics"
# Receive->delivered spans a fast sink (milliseconds) and a retried one (hours).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def default_multiprocess_dir(data_dir: str | os.PathLike[str]) -> Path:
    """Where ``gateway run`` keeps the per-process metric files: ``<data_dir>/metrics``."""
    return Path(data_dir) / DEFAULT_SUBDIR


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> Path:
    """Create (or empty) ``path`` and point ``PROMETHEUS_MULTIPROC_DIR`` at it.

    ``gateway run`` calls it once, before it starts web and worker processes: they inherit
    the variable. Emptying it starts the run's counters from zero (Prometheus expects a
    reset at a restart) and keeps the files of long-gone processes from piling up.
    """
    target = Path(path).resolve()
    if target.exists():
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    return _use_directory(target)


def ensure_multiprocess_dir(data_dir: str | os.PathLike[str]) -> Path:
    """For ``gateway web`` and ``gateway worker`` started on their own: keep the directory
    that ``gateway run`` or the operator chose, else use ``<data_dir>/metrics``, so the
    processes of one machine add up. Nothing is deleted: other processes may be writing
    there, and the files of processes that have exited still count towards the totals."""
    current = os.environ.get(MULTIPROC_ENV)
    return _use_directory(Path(current) if current else default_multiprocess_dir(data_dir).resolve())


def _use_directory(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(target)
    if "prometheus_client.values" in sys.modules:
        # prometheus_client picks its value store when first imported; a process that
        # imported it before the variable was set would otherwise keep per-process values.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    return target


def multiprocess_enabled() -> bool:
    """True when this process records into (and scrapes merge) the shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The gateway's counters and histograms. Use :func:`get` for the process's instance."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        # *_created series exist only without multiprocess mode; leave them out so one
        # process and many report the same series.
        disable_created_metrics()
        # Our own registry, not the global one: in multiprocess mode a scrape reads the
        # files instead, and nothing else in the process (rq, a test) registers into it.
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.tickets_received = Counter(
            "gateway_tickets_received", "Tickets created (ticket.created events published).", registry=reg)
        self.events_published = Counter(
            "gateway_events_published", "Events stored and queued for delivery, by event type.",
            ["event"], registry=reg)
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP requests answered, by endpoint (route), method and status.",
            ["endpoint", "method", "status"], registry=reg)
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds", "Time to answer an HTTP request, by endpoint.",
            ["endpoint"], buckets=REQUEST_BUCKETS, registry=reg)
        self.deliveries = Counter(
            "gateway_delivery_attempts", "Delivery attempts by sink and outcome "
            "(delivered, retry, give_up, gone, deferred, ...).", ["sink", "outcome"], registry=reg)
        self.attempt_duration = Histogram(
            "gateway_delivery_attempt_duration_seconds", "Duration of one delivery attempt (request and "
            "response), by sink.", ["sink"], buckets=ATTEMPT_BUCKETS, registry=reg)
        self.delivered_latency = Histogram(
            "gateway_delivery_latency_seconds", "From the event's timestamp (received) to its successful "
            "delivery, retries included, by sink.", ["sink"], buckets=LATENCY_BUCKETS, registry=reg)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._event_children: dict[str, Any] = {}

    def observe_event(self, event: Event) -> None:
        """Count one published event."""
        child = self._event_children.get(event.name)
        if child is None:  # labels() locks and builds a key each call (see observe_request)
            child = self._event_children[event.name] = self.events_published.labels(event.name)
        child.inc()
        if event.name == "ticket.created":
            self.tickets_received.inc()

    def observe_attempt(self, attempt: Mapping[str, Any], now: float | None = None) -> None:
        """Count one delivery attempt from its delivery-log record."""
        sink = str(attempt.get("sink") or "unknown")
        outcome = str(attempt.get("outcome") or "unknown")
        self.deliveries.labels(sink, outcome).inc()
        duration = attempt_duration_seconds(attempt)
        if duration is not None:
            self.attempt_duration.labels(sink).observe(duration)
        if outcome == "delivered":
            received = _epoch_seconds(attempt.get("event_timestamp"))
            started = _epoch_seconds(attempt.get("at"))
            if received is not None:
                # The attempt's own end (start + duration) rather than "now": observers may
                # run a little later than the attempt finished.
                if started is not None and duration is not None:
                    finished = started + duration
                else:
                    finished = time.time() if now is None else now
                self.delivered_latency.labels(sink).observe(max(0.0, finished - received))

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request."""
        key = (endpoint, method, status)
        children = self._request_children.get(key)
        if children is None:
            # labels() takes a lock and builds a key on every call; the request path keeps
            # its few (endpoint, method, status) children at hand instead.
            children = (self.http_requests.labels(endpoint, method, str(status)),
                        self.http_duration.labels(endpoint))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)


_instance: Metrics | None = None
_instance_lock = threading.Lock()


def get() -> Metrics:
    """This process's metrics, built on first use (after ``PROMETHEUS_MULTIPROC_DIR`` is set)."""
    global _instance
    if _instance is None:
        # A worker's delivery threads may all arrive here at once. Two instances would each
        # keep their own copy of a multiprocess value and overwrite each other's counts.
        with _instance_lock:
            if _instance is None:
                _instance = Metrics()
    return _instance


def attempt_duration_seconds(attempt: Mapping[str, Any]) -> float | None:
    """An attempt record's duration in seconds (records carry ``duration_ms``)."""
    value = attempt.get("duration_ms")
    if value is None:
        value = attempt.get("duration")
        return float(value) if isinstance(value, (int, float)) else None
    return float(value) / 1000.0 if isinstance(value, (int, float)) else None


def _epoch_seconds(value: Any) -> float | None:
    """Seconds since the epoch from an ISO-8601 string (``Z`` allowed) or a number of
    milliseconds (how Redis records store times)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            try:
                return _epoch_seconds(float(value))
            except ValueError:
                return None
    return None


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
        sinks = [s.name for s in runtime.settings.sinks]
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
        registry.register(_Forward(get().registry))
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


def safely(what: str, record: Callable[[], object]) -> None:
    """Run ``record()``; an error is logged, never raised: metrics must not break a request
    or a delivery."""
    try:
        record()
    except Exception:  # noqa: BLE001 - observing must never fail the observed
        log.exception("metrics: recording %s failed", what)

