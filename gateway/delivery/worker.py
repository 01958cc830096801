"""A delivery worker process: an rq worker that never forks + a delivery thread pool
+ a sweeper thread.

rq's per-job bookkeeping costs ~50 Redis round trips, so rq jobs here are wake-ups
(``gateway.delivery.jobs.drain``), scheduled retries and circuit wake-ups, never one job per
delivery: a drain job hands its sink to this process's :class:`~gateway.delivery.drainer.Drainer`,
whose threads claim deliveries in batches and run them concurrently on the pool
(``--concurrency``). rq's scheduler runs too (``with_scheduler``), so retries fire.
Run as many of these as you like, on any machines sharing the Redis.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import signal
import socket
import threading
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from gateway.delivery import jobs
from gateway.delivery.drainer import Drainer
from gateway.delivery.sweeper import Sweeper
from gateway.runtime import Runtime
from gateway.storage.connection import connect

log = logging.getLogger("gateway.delivery.worker")
BURST_IDLE_WAIT_S = 600.0
MAINTENANCE_INTERVAL_S = 30
SUMMARY_INTERVAL_S = 60.0
REDIS_RETRY_S = 2.0


class GatewayScheduler(RQScheduler):
    """rq's scheduler (a forked child of the worker) that dies with its worker, and whose
    Redis client is made from the gateway's ``redis_url``.

    A SIGKILLed worker would otherwise leave its scheduler child running, and the child
    holds the worker's Redis sockets open (inherited at fork): Redis then still sees the
    dead worker's blocking dequeue and hands it the next job, which nobody runs.

    rq rebuilds the scheduler's client in the child from the worker's connection class and
    keyword arguments as a plain ``ConnectionPool``; for a Sentinel client those arguments
    point back at the parent's pool, so the scheduler would not be the one following a
    failover. A client of its own from the URL asks the sentinels itself.
    """

    def __init__(self, *args: Any, redis_url: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis_url = redis_url
        self._wake: int | None = None

    @property
    def connection(self) -> redis.Redis:
        if self._connection is None:
            self._connection = connect(self.redis_url)  # type: ignore[assignment]
        return self._connection  # type: ignore[return-value]

    def work(self) -> None:
        """rq's scheduler loop, but a stop request ends the wait between two passes at
        once. rq sleeps out its interval (a second), and the worker's own stop waits for
        this process, so the worker holding the scheduler took up to a second longer to stop."""
        _die_with_parent()
        # The self-pipe: the stop handler writes to it, and the wait is a select on it, so a
        # request that comes just before the wait ends it as well as one during it.
        wake, self._wake = os.pipe()
        self._install_signal_handlers()
        self.register_birth()
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()
            self.heartbeat()
            self.enqueue_scheduled_jobs()
            select.select([wake], [], [], self.interval)
        self.stop()

    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        super().request_stop(signum, frame)
        if self._wake is not None:
            os.write(self._wake, b"x")


def _die_with_parent() -> None:
    # Linux prctl(PR_SET_PDEATHSIG, SIGTERM): SIGTERM makes rq's scheduler stop and release
    # its lock, so another worker's scheduler takes over. Elsewhere this is best effort.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the worker died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class GatewayWorker(SimpleWorker):
    """rq's SimpleWorker (jobs run in the worker's main thread, no fork) that owns the
    process's drainer and sweeper."""

    def __init__(self, queues: Any, drainer: Drainer, sweeper: Sweeper, redis_url: str, **kwargs: Any) -> None:
        # Maintenance every 30 s rather than rq's 10 min: it is where a worker takes over the
        # scheduler lock of one that died, and retries wait on the scheduler.
        kwargs.setdefault("maintenance_interval", MAINTENANCE_INTERVAL_S)
        # Maintenance only runs between dequeues, and an idle worker blocks in dequeue for
        # worker_ttl - 15 s (rq's default: 405 s): keep that to the maintenance interval, or a
        # scheduler that died (e.g. with a Redis restart) stays dead for minutes.
        kwargs.setdefault("worker_ttl", MAINTENANCE_INTERVAL_S + 15)
        super().__init__(queues, serializer=JSONSerializer, **kwargs)
        self.drainer = drainer
        self.sweeper = sweeper
        self.redis_url = redis_url
        self.summary = Summary(drainer)
        self._burst = False

    def work(self, burst: bool = False, **kwargs: Any) -> bool:  # type: ignore[override]
        self._burst = burst
        try:
            return super().work(burst=burst, **kwargs)
        finally:
            self.summary.stop()
            self.sweeper.stop()
            self.drainer.stop()

    def execute_job(self, job: Any, queue: Any) -> None:
        # The jobs find this worker's engine here (gateway.delivery.jobs.current_engine).
        token = jobs.current_engine.set(self.drainer)
        try:
            super().execute_job(job, queue)
        finally:
            jobs.current_engine.reset(token)

    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO", *args: Any) -> None:
        # rq's own, with a scheduler that dies with this process (see GatewayScheduler).
        self.scheduler = GatewayScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                          logging_level=logging_level if logging_level is not None else "INFO",
                                          redis_url=self.redis_url)
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if burst:
            try:
                self.scheduler.register_birth()
                self.scheduler.enqueue_scheduled_jobs()
            finally:
                self.scheduler.release_locks()
                self.scheduler.register_death()
        else:
            self.scheduler.start()

    def unsubscribe(self) -> None:
        # rq sends UNSUBSCRIBE, then stops its pubsub thread and joins it for up to a second.
        # A thread that reads the reply before it is told to stop goes on to wait for a new
        # subscription for its whole poll time (redis-py's get_message, unsubscribed: 60 s
        # here), so the join timed out and about every other stop took a second longer.
        # Told first, the thread ends on the reply.
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()
        super().unsubscribe()

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # Started here, after rq has forked its scheduler process, so that the fork does
        # not copy a process with our threads running.
        self.sweeper.start()
        self.summary.start()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if result is not None or not self._burst:
            return result
        # Burst: the rq queue is empty, but drain jobs only started drainers. Finish what
        # they are doing, sweep once (interrupted deliveries, lost wake-ups), and stop when
        # nothing new turned up.
        while True:
            self.drainer.wait_idle(BURST_IDLE_WAIT_S)
            self.sweeper.sweep()
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if result is not None or self.drainer.idle:
                return result


class Summary:
    """Logs one line a minute while the worker delivers: attempts by outcome since the last
    line, and what is in flight."""

    def __init__(self, drainer: Drainer, interval: float = SUMMARY_INTERVAL_S) -> None:
        self.drainer = drainer
        self.interval = interval
        self._stop = threading.Event()
        self._last: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="summary", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def line(self) -> str | None:
        """The summary since the previous call; None when nothing happened."""
        counts = dict(self.drainer.outcomes)
        delta = {k: counts.get(k, 0) - self._last.get(k, 0) for k in ("delivered", "retrying", "failed")}
        self._last = counts
        in_flight = self.drainer.in_flight()
        if not any(delta.values()) and not in_flight:
            return None
        return (f"last {self.interval:.0f}s: {delta['delivered']} delivered, {delta['retrying']} retrying, "
                f"{delta['failed']} failed; {in_flight} in flight")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            text = self.line()
            if text:
                log.info("%s", text)


def build_worker(runtime: Runtime, concurrency: int | None = None, name: str | None = None) -> GatewayWorker:
    """A worker for ``runtime``'s queue with its own drainer and sweeper."""
    concurrency = concurrency or runtime.settings.delivery.concurrency
    drainer = Drainer(runtime, concurrency)
    sweeper = Sweeper(drainer)
    # Its own client: rq raises the socket timeout for its blocking dequeue, which the
    # engine's short-timeout client must keep. With a Sentinel URL it follows the master.
    connection = connect(runtime.redis_url)
    queue = Queue(runtime.settings.queue, connection=connection, serializer=JSONSerializer)
    # rq's default name is a bare 32-hex UUID, which the log redaction net hides as a
    # possible secret ("Worker [redacted]"); host.pid says which process it is.
    name = name or f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(2)}"
    return GatewayWorker([queue], drainer, sweeper, runtime.redis_url, connection=connection, name=name)


def run_worker(runtime: Runtime, concurrency: int | None = None, burst: bool = False, name: str | None = None,
               log_level: str = "INFO") -> None:
    """Run a worker for ``runtime`` in this process until stopped (or idle, with ``burst``).

    rq's work loop quits on any Redis error outside its blocking dequeue (Redis restarted
    while the worker records a job, say), and its teardown then raises too. So when the loop
    ends without a stop request, a fresh rq worker starts as soon as Redis answers again:
    a Redis restart needs no operator. Deliveries that were in flight meanwhile are put back
    by the sweeper when their lease expires."""
    while True:
        try:
            worker = build_worker(runtime, concurrency, name)
        except redis.RedisError as exc:
            # rq names itself in Redis on start-up: Redis went away again (or the sentinels
            # still name a master that is gone) between the ping and here.
            log.warning("could not start a worker: Redis unavailable (%s)", type(exc).__name__)
            if burst or not _wait_for_redis(runtime, REDIS_RETRY_S):
                return
            continue
        log.info("worker %s: queue %s, %d delivery threads, sinks: %s", worker.name, runtime.settings.queue,
                 worker.drainer.concurrency, ", ".join(s.name for s in runtime.settings.sinks) or "none")
        try:
            worker.work(burst=burst, with_scheduler=True, logging_level=log_level)
        except redis.RedisError as exc:
            log.warning("worker %s: stopped by a Redis error (%s: %s)", worker.name, type(exc).__name__,
                        str(exc)[:200])
        if burst or worker._shutdown_requested_date is not None or not _wait_for_redis(runtime):
            return
        name = None  # the old name may stay registered in Redis until its TTL runs out
        log.warning("Redis answers again: starting a new worker")


def _wait_for_redis(runtime: Runtime, first_wait: float = 0.0) -> bool:
    """Wait until Redis answers (True), or until SIGTERM/SIGINT asks this process to stop."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop.wait(first_wait)
        while not stop.is_set():
            try:
                if runtime.redis.ping():
                    return True
            except redis.RedisError:
                pass
            stop.wait(REDIS_RETRY_S)
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
