"""Prometheus metrics: what the gateway counts.

Counters and histograms are recorded where things happen: every published event (the
publisher), every delivery attempt (the delivery engine) and every HTTP request (the
request middleware). Gauges that describe the backlog (queue depth, retry backlog, in
flight, open circuits) are *not* recorded: the scrape endpoint reads them from Redis
(:mod:`gateway.web.api.metrics`), so they are right whichever process answers the scrape
and however many machines run workers.

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
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.data_dir import PRIVATE_DIR_MODE, ensure_private_dir

if TYPE_CHECKING:  # pragma: no cover
    from gateway.events import Event

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
    if current:
        return _use_directory(Path(current))
    ensure_private_dir(data_dir)
    return _use_directory(default_multiprocess_dir(data_dir).resolve())


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


# Every fork made through Python (os.fork: gunicorn's workers, rq's work horses,
# multiprocessing) runs this in the child before any of its code, so _pid is always this
# process's id.
os.register_at_fork(after_in_child=_forked)


def process_id() -> int:
    """This process's id, for prometheus_client's multiprocess values: they ask for it at
    every ``inc`` to notice a fork (and then write to the new process's own files), and
    ``os.getpid()`` is a system call, five per delivery attempt. Kept in memory instead,
    refreshed in the child of every fork."""
    return _pid


def _use_directory(target: Path) -> Path:
    target.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(target)
    # prometheus_client picks its value store when first imported (a process that imported
    # it before the variable was set would keep per-process values): set it here, the same
    # shared-file store with the pid read by process_id().
    from prometheus_client import values

    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)
    return target


def multiprocess_enabled() -> bool:
    """True when this process records into (and scrapes merge) the shared directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Metrics:
    """The gateway's counters and histograms: one per process, ``runtime.metrics``.

    One instance per process matters in multiprocess mode: two instances of one metric in
    one process would each cache its value and overwrite each other's counts in the shared
    file. A process builds one runtime (tests build several, without multiprocess mode)."""

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
        self.filtered = Counter(
            "gateway_events_filtered", "Events a sink was subscribed to but its content filter turned away "
            "(no delivery made), by sink and event type.", ["sink", "event"], registry=reg)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._event_children: dict[str, Any] = {}
        self._filtered_children: dict[tuple[str, str], Any] = {}
        self._attempt_children: dict[str, tuple[Any, Any]] = {}
        self._outcome_children: dict[tuple[str, str], Any] = {}

    def observe_event(self, event: Event) -> None:
        """Count one published event."""
        child = self._event_children.get(event.name)
        if child is None:  # labels() locks and builds a key each call (see observe_request)
            child = self._event_children[event.name] = self.events_published.labels(event.name)
        child.inc()
        if event.name == "ticket.created":
            self.tickets_received.inc()

    def observe_filtered(self, event: Event, sinks: Sequence[str]) -> None:
        """Count ``event`` as turned away by the content filter of each of ``sinks``."""
        for sink in sinks:
            key = (sink, event.name)
            child = self._filtered_children.get(key)
            if child is None:
                child = self._filtered_children[key] = self.filtered.labels(sink, event.name)
            child.inc()

    def observe_attempt(self, attempt: Mapping[str, Any], now: float | None = None) -> None:
        """Count one delivery attempt from its delivery-log record."""
        sink = str(attempt.get("sink") or "unknown")
        outcome = str(attempt.get("outcome") or "unknown")
        # The label children kept at hand (labels() locks and builds a key each call; with
        # a worker's threads all counting at once, that lock was contended per attempt).
        counter = self._outcome_children.get((sink, outcome))
        if counter is None:
            counter = self._outcome_children[(sink, outcome)] = self.deliveries.labels(sink, outcome)
        children = self._attempt_children.get(sink)
        if children is None:
            children = self._attempt_children[sink] = (self.attempt_duration.labels(sink),
                                                       self.delivered_latency.labels(sink))
        counter.inc()
        duration = attempt_duration_seconds(attempt)
        if duration is not None:
            children[0].observe(duration)
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
                children[1].observe(max(0.0, finished - received))

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


def safely(what: str, record: Callable[[], object]) -> None:
    """Run ``record()``; an error is logged, never raised: metrics must not break a request
    or a delivery."""
    try:
        record()
    except Exception:  # observing must never fail the observed
        log.exception("metrics: recording %s failed", what)

