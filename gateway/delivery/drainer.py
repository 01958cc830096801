"""The drainer: a worker process's side of the claim / lease / release protocol.

An rq ``drain(sink, token)`` job is a wake-up, not a delivery: it hands the sink and the
drainer token (a lease in ``gw:drainers:<sink>``) to this process's :class:`Drainer` and
returns at once. The drainer runs a loop per token in its own thread: claim a batch of ready
deliveries (claim.lua: respects pause, circuit, the sink's global in-flight cap and rate
limit), run each on the process-wide delivery thread pool, and when the ready list is empty
and nothing of the sink is in flight here, release the token (release.lua), which only
succeeds if no work arrived meanwhile. See docs/delivery-engine.md.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import redis

from gateway.delivery.attempt import INFLIGHT_MARGIN_MS, AttemptRunner
from gateway.delivery.http_client import OutboundClient
from gateway.storage.connection import transient
from gateway.storage.scripts import ClaimedDelivery, Scripts

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.delivery.drainer")

BATCH = 32
"""Most deliveries one claim takes: amortises the round trip without hoarding work that
another process could be doing."""
LINGER_S = 1.0
"""How long an idle drainer waits for new work before it releases: under steady load this
spares an rq wake-up job per lull. It waits blocked in Redis (see ``_await_work``), so new
work is picked up at once and waiting costs nothing."""
WAIT_S = 0.1
REFILL = 4
"""When a sink is at its in-flight cap, how many of its attempts here must finish before the
drainer claims again (fewer if fewer are running here). Claiming each freed slot on its own
cost a claim round trip per delivery or so; waiting for a few frees them in one claim. At
most REFILL slots of a sink's cap stand idle meanwhile."""
TOUCH_EVERY_S = 5.0
RIDE_OUT_S = 25.0
"""How long a drainer waits for Redis to answer again before it gives up its sink (within
the 30 s drainer lease, so nothing waits on a lease nobody renews)."""


class Drainer:
    """A process's drainers and its delivery thread pool."""

    def __init__(self, runtime: Runtime, concurrency: int, client: OutboundClient | None = None) -> None:
        if client is None:
            client = OutboundClient(allow_private_networks=runtime.settings.delivery.allow_private_networks,
                                    max_pool_per_host=max(concurrency, 1))
        self.runtime = runtime
        self.concurrency = concurrency
        self.client = client
        self.scripts: Scripts = runtime.scripts
        self.runner = AttemptRunner(runtime, client)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="delivery")
        self._cond = threading.Condition()
        self._free = concurrency
        self._local: dict[str, int] = {}
        self._want: dict[str, list[int]] = {}
        """sink -> the in-flight counts its waiting drainer loops wait for (``_wait_for``):
        a finished attempt wakes them only when one is reached, not at every attempt."""
        self._loops: dict[str, threading.Thread] = {}
        self._sinks: dict[str, str] = {}
        """token -> sink, for the loops in ``_loops``."""
        self._awaiting: set[str] = set()
        """The tokens of the loops blocked in Redis waiting for new work (``_await_work``)."""
        self._stopping = False
        self.attempts = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        """Attempts by the status they left their delivery in (for the worker's summary)."""

    # -- bookkeeping -------------------------------------------------------------------
    def in_flight(self, sink: str | None = None) -> int:
        """Attempts running in this process (for one sink, or all)."""
        with self._cond:
            return self._local.get(sink, 0) if sink else self.concurrency - self._free

    def draining(self) -> list[str]:
        """The sinks this process has a drainer loop for."""
        with self._cond:
            return sorted(set(self._sinks.values()))

    @property
    def idle(self) -> bool:
        """True when no drainer loop and no attempt is running here."""
        with self._cond:
            return not self._loops and self._free == self.concurrency

    def wait_idle(self, timeout: float) -> bool:
        """Block until :attr:`idle` (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._wait_locked(lambda: not self._loops, timeout)

    def _wait_locked(self, loops_done: Callable[[], bool], timeout: float) -> bool:
        # With self._cond held: until no attempt runs and loops_done(), or timeout (False).
        deadline = time.monotonic() + timeout
        while not loops_done() or self._free != self.concurrency:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._cond.wait(min(left, WAIT_S))
        return True

    # -- the rq job's entry point ------------------------------------------------------
    def start(self, sink: str, token: str) -> None:
        """Start a drainer loop for ``token`` (called from the rq drain job; returns at once)."""
        with self._cond:
            stopping = self._stopping
            if not stopping and token not in self._loops:
                thread = threading.Thread(target=self._loop, args=(sink, token), name=f"drain:{sink}", daemon=True)
                self._loops[token] = thread
                self._sinks[token] = sink
                thread.start()
        if stopping:
            # Shutting down: hand the sink back at once rather than when the lease lapses.
            self.scripts.drop(sink, token)

    def run_inline(self, sink: str, token: str) -> None:
        """Drain until released, in the calling thread (for an rq worker that is not ours)."""
        with self._cond:
            self._loops[token] = threading.current_thread()
            self._sinks[token] = sink
        self._loop(sink, token)
        self.wait_idle(timeout=3600)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let running attempts finish (up to ``timeout``), give up leases.
        Whatever is still in flight afterwards is put back by a sweeper when its lease ends.

        A loop blocked in Redis waiting for new work (up to :data:`LINGER_S`) has nothing
        running: its lease is given up here rather than once the block times out, so a
        stop does not wait for it (it ends by itself when the block does, without claiming)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._wait_locked(lambda: self._loops.keys() <= self._awaiting, timeout)
            awaiting = [(self._sinks[token], token) for token in self._awaiting]
        for sink, token in awaiting:
            try:
                self.scripts.drop(sink, token)
            except redis.RedisError as exc:  # the lease then lapses; the sweeper re-wakes the sink
                log.warning("could not give up the drainer lease of sink %s: %s", sink, type(exc).__name__)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop ------------------------------------------------------------------------
    def _loop(self, sink: str, token: str) -> None:
        try:
            while True:
                try:
                    self._drain(sink, token)
                    break
                except redis.RedisError as exc:
                    # A failover (or a Redis restart) takes seconds: ride it out with the same
                    # token (the next claim renews its lease) rather than leave a lease that
                    # keeps other drainers away until it lapses.
                    if not transient(exc) or not self._redis_back(RIDE_OUT_S):
                        raise
                    log.warning("drainer for sink %s: Redis was unavailable (%s); carrying on", sink,
                                type(exc).__name__)
        except Exception:  # Redis down for long, or a bug: this thread ends, the process lives
            log.exception("drainer for sink %s stopped on an error", sink)
            try:
                self.scripts.drop(sink, token)
            except redis.RedisError as exc:  # the lease then lapses; the sweeper re-wakes the sink
                log.warning("could not give up the drainer lease of sink %s: %s", sink, type(exc).__name__)
        finally:
            with self._cond:
                self._loops.pop(token, None)
                self._sinks.pop(token, None)
                self._cond.notify_all()

    def _drain(self, sink: str, token: str) -> None:
        runtime = self.runtime
        config = runtime.integrations.configs.get(sink)
        if config is None:
            # Perhaps created a moment ago through the API, after this process's view.
            config = runtime.refresh().configs.get(sink)
        if config is None:
            # Not configured: the sweeper ends its deliveries with a clear error.
            self.scripts.drop(sink, token)
            return
        lingered = False
        last_touch = time.monotonic()
        while True:
            # The sink's current settings (an admin may change them while this loop runs).
            config = runtime.integrations.configs.get(sink, config)
            lease_ms = int(config.timeout * 1000) + INFLIGHT_MARGIN_MS
            interval_ms = int(1000 / config.rate_limit) if config.rate_limit else 0
            with self._cond:
                if self._stopping:
                    break
                free = self._free
            if free == 0:
                with self._cond:
                    self._cond.wait(WAIT_S)
                if time.monotonic() - last_touch > TOUCH_EVERY_S:
                    self.scripts.touch(sink, token)
                    last_touch = time.monotonic()
                continue
            result = self.scripts.claim(sink, token, min(BATCH, free), config.max_in_flight, lease_ms, interval_ms,
                                        config.fan_out)
            last_touch = time.monotonic()
            if result.config_version is not None and result.config_version != runtime.integrations.version:
                # A sink changed after this process's view: what was just claimed is
                # attempted with the settings of now (the version was read after the claim).
                runtime.reload()
            if result.status == "ok":
                lingered = False
                for claimed in result.deliveries:
                    self._submit(sink, claimed)
                if result.room <= 0:
                    # At the cap: a claim now would only hear "full".
                    self._wait_for(sink)
                continue
            if result.status == "held":
                if self.scripts.release(sink, token):
                    return
                continue
            if result.status == "empty":
                if self.in_flight(sink):
                    # Attempts of this sink still run here: be back soon to release when
                    # they are done, or at once when work arrives.
                    self._await_work(sink, token, WAIT_S)
                    continue
                if not lingered:
                    lingered = True
                    self._await_work(sink, token, LINGER_S)
                    continue
                if self.scripts.release(sink, token):
                    return
                lingered = False
                continue
            if result.status == "rate":
                time.sleep(min(result.wait_ms / 1000, 1.0))
                continue
            # "full" (the sink's in-flight cap, perhaps held by other processes) or "probe"
            # (a circuit probe is out): wait for a completion here, or poll.
            self._wait_for(sink)
        self.scripts.drop(sink, token)

    def _redis_back(self, limit: float) -> bool:
        """Wait until Redis answers (True), for at most ``limit`` seconds or until stopping."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            with self._cond:
                if self._stopping:
                    return False
            try:
                if self.runtime.redis.ping():
                    return True
            except redis.RedisError:
                pass
            time.sleep(WAIT_S * 5)
        return False

    def _await_work(self, sink: str, token: str, timeout: float) -> None:
        """Block until the sink's ready list is non-empty or ``timeout`` passes. BLMOVE from
        the list's head to its own head moves nothing: it is Redis's "wait until non-empty"
        (the claim that follows takes the work, atomically with its lease)."""
        ready = self.runtime.keys.ready(sink)
        with self._cond:
            if self._stopping:
                return
            self._awaiting.add(token)
        try:
            self.runtime.redis.blmove(ready, ready, timeout, src="LEFT", dest="LEFT")  # type: ignore[arg-type]
        finally:
            with self._cond:
                self._awaiting.discard(token)

    def _wait_for(self, sink: str) -> None:
        """Wait until REFILL of the sink's attempts here have finished (all of them if fewer
        run here), or WAIT_S passes: slots other processes free are only seen by polling."""
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            running = self._local.get(sink, 0)
            until = running - min(REFILL, running)
            wants = self._want.setdefault(sink, [])
            wants.append(until)
            try:
                while not self._stopping:
                    if running and self._local.get(sink, 0) <= until:
                        return
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._cond.wait(left)
            finally:
                wants.remove(until)
                if not wants:
                    del self._want[sink]

    def _submit(self, sink: str, claimed: ClaimedDelivery) -> None:
        with self._cond:
            self._free -= 1
            self._local[sink] = self._local.get(sink, 0) + 1
        try:
            self.pool.submit(self._run, sink, claimed)
        except RuntimeError:  # pool shut down: the lease expires and a sweeper requeues it
            self._done(sink)

    def _run(self, sink: str, claimed: ClaimedDelivery) -> None:
        try:
            record = self.runner.run(claimed)
            with self._cond:
                self.outcomes[record["status"]] += 1
        except Exception:
            # Recording failed (Redis down?): the in-flight lease expires and the sweeper puts
            # the delivery back, so it is retried rather than lost.
            log.exception("attempt of delivery %s could not be recorded", claimed.id)
        finally:
            self._done(sink)

    def _done(self, sink: str) -> None:
        with self._cond:
            self.attempts += 1
            self._free += 1
            left = self._local[sink] - 1
            if left:
                self._local[sink] = left
            else:
                del self._local[sink]
            # Wake the waiters only when what one waits for has happened: a loop waiting for
            # a free slot (there was none), for REFILL of its sink's attempts (``_want``),
            # or for the process to go idle. Waking every waiting loop at every attempt cost
            # a thread switch (and a GIL hand-off) per delivery for nothing.
            if (self._free == 1 or self._free == self.concurrency
                    or any(left <= until for until in self._want.get(sink, ()))):
                self._cond.notify_all()
