"""The delivery engine's Lua scripts (``gateway/lua/*.lua``), registered once per process.

Each method is one Redis round trip and one atomic step of the protocol described in
``docs/delivery-engine.md``: claim, release, finish, requeue (retry / replay / wake) and
sweep. ``wake.lua`` holds the shared "does this sink need a drainer?" rule and is
prepended to the scripts that wake drainers.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.bus import BACKLOG_PER_DRAINER, DRAINER_LEASE_MS, load_lua

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

SWEEP_MAX_DRAINERS = 1_000_000
FINISH_RECORD = 18
"""Values per attempt in a finish.lua call (see the script's header)."""
FINISH_BATCH = 64
"""Most attempts recorded by one finish.lua call: bounds the time the script holds Redis."""
_BY_RUNTIME: weakref.WeakKeyDictionary[Any, EngineScripts] = weakref.WeakKeyDictionary()


def now_ms() -> int:
    """Wall-clock milliseconds, the unit every engine timestamp in Redis uses."""
    return int(time.time() * 1000)


def as_text(value: Any) -> str:
    """A Redis reply value as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a drainer claimed: its stored hash and its event's storage JSON (None
    when the event has expired)."""

    id: str
    fields: dict[str, str]
    event_json: str | None


@dataclasses.dataclass(frozen=True)
class ClaimResult:
    """What one claim returned; ``status`` is ok / empty / held / full / probe / rate;
    ``room``: the sink's free in-flight slots left (0 at its cap)."""

    status: str
    wait_ms: int
    room: int = 0
    deliveries: tuple[ClaimedDelivery, ...] = ()


@dataclasses.dataclass(frozen=True)
class RequeueResult:
    """What a requeue did: per delivery id its outcome (queued / missing / stale / busy),
    and the (sink, token) drainers it reserved, whose rq jobs are already enqueued."""

    queued: int
    outcomes: dict[str, str]
    wakes: tuple[tuple[str, str], ...]


class EngineScripts:
    """The registered scripts, with typed calls. Get one with :func:`scripts_for`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        redis = runtime.redis
        wake = load_lua("wake")
        self._claim = redis.register_script(load_lua("claim"))
        self._release = redis.register_script(load_lua("release"))
        self.finish = redis.register_script(load_lua("finish"))
        self.finishes = GroupFinish(self)
        self._requeue = redis.register_script(wake + "\n" + load_lua("requeue"))
        self._sweep = redis.register_script(wake + "\n" + load_lua("sweep"))

    @property
    def prefix(self) -> str:
        return self.runtime.settings.key_prefix

    def claim(self, sink: str, token: str, n: int, max_in_flight: int, inflight_lease_ms: int,
              rate_interval_ms: int) -> ClaimResult:
        """Claim up to ``n`` ready deliveries of ``sink`` (see claim.lua)."""
        reply = self._claim(args=[self.prefix, sink, token, now_ms(), DRAINER_LEASE_MS, max_in_flight, n,
                                  inflight_lease_ms, rate_interval_ms])
        claimed = []
        for item in reply[3:]:
            raw_id, flat, event = item
            fields = {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}
            claimed.append(ClaimedDelivery(as_text(raw_id), fields, as_text(event) if event else None))
        return ClaimResult(as_text(reply[0]), int(reply[1]), int(reply[2]), tuple(claimed))

    def finish_many(self, records: Sequence[Sequence[Any]]) -> list[int]:
        """Record finished attempts in one finish.lua call, in order; ``records`` are
        :data:`FINISH_RECORD` values each. Returns each one's circuit_open_until (0 = none)."""
        args: list[Any] = [self.prefix]
        for record in records:
            args.extend(record)
        return [int(opened) for opened in self.finish(args=args)]

    def release(self, sink: str, token: str) -> bool:
        """Stop draining ``sink`` unless work arrived meanwhile; True when released."""
        return bool(self._release(args=[self.prefix, sink, token, now_ms(), DRAINER_LEASE_MS]))

    def touch(self, sink: str, token: str) -> None:
        """Extend a drainer's lease while it waits without claiming."""
        self.runtime.redis.zadd(self.runtime.keys.drainers(sink), {token: now_ms() + DRAINER_LEASE_MS})

    def drop(self, sink: str, token: str) -> None:
        """Give up a drainer lease unconditionally (shutdown); the sweeper re-wakes the sink."""
        self.runtime.redis.zrem(self.runtime.keys.drainers(sink), token)

    def requeue(self, mode: str, deliveries: Sequence[tuple[str, str]] = (), wake_sinks: Iterable[str] = ()
                ) -> RequeueResult:
        """Push deliveries back on their ready lists (``mode`` "retry": only when still
        retrying with the expected attempt count; "replay": back to pending, same id) and
        wake drainers for their sinks and ``wake_sinks``; the drain jobs are enqueued here."""
        args: list[Any] = [self.prefix, now_ms(), self.runtime.max_drainers, DRAINER_LEASE_MS,
                           BACKLOG_PER_DRAINER, mode, len(deliveries)]
        for delivery_id, expected in deliveries:
            args.extend((delivery_id, expected))
        args.extend(wake_sinks)
        args.append(f"drain-{uuid.uuid4().hex}-")
        reply = self._requeue(args=args)
        outcomes = {as_text(i): as_text(o) for i, o in reply[1]}
        wakes = tuple((as_text(reply[i]), as_text(reply[i + 1])) for i in range(2, len(reply), 2))
        if wakes:
            self.runtime.publisher.wake(list(wakes))
        return RequeueResult(int(reply[0]), outcomes, wakes)

    def sweep(self, configured: Sequence[str], draining: Iterable[str]
              ) -> tuple[list[tuple[str, str]], list[str], int]:
        """One sweeper pass (see sweep.lua). Returns the drainer tokens reserved for the
        caller to run itself (for configured sinks not in ``draining``), sinks that are not
        configured but have ready work, and how many expired in-flight leases were put
        back. Also trims the log's indexes to the retention period."""
        now = now_ms()
        cutoff = now - int(self.runtime.settings.retention_days * 86_400_000)
        # No cap on drainers here beyond "one per process and sink" (``draining``): the
        # busy process may hold every wake-up token, and an idle one must still be able to join.
        reply = self._sweep(args=[self.prefix, now, SWEEP_MAX_DRAINERS, DRAINER_LEASE_MS,
                                  BACKLOG_PER_DRAINER, f"drain-sweep-{uuid.uuid4().hex}-", cutoff,
                                  len(configured), *configured, *draining])
        starts = [(as_text(sink), as_text(token)) for sink, token in reply[0]]
        return starts, [as_text(s) for s in reply[1]], int(reply[2])


class _Finishing:
    __slots__ = ("record", "opened", "error", "done", "wake")

    def __init__(self, record: Sequence[Any]) -> None:
        self.record = record
        self.opened = 0
        self.error: BaseException | None = None
        self.done = False
        # A bare lock as a one-shot signal: taken now, released to wake the waiter. A
        # threading.Event (a Condition and two more locks) cost visibly at 1,000+ attempts/s.
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupFinish:
    """Group commit of finished attempts: one finish.lua round trip for all the attempts
    that finished while the previous round trip was out.

    No timer and no extra thread: the first caller writes (the "leader"); callers arriving
    meanwhile queue up; when the leader's write returns it hands the queue to the first of
    them, which writes it as one call. Alone, a caller writes at once, as before. Every
    caller returns only once its own attempt is in Redis (or raises, and its in-flight lease
    then expires and the sweeper puts the delivery back: a redelivery, never a loss).
    """

    def __init__(self, scripts: EngineScripts, limit: int = FINISH_BATCH) -> None:
        self.scripts = scripts
        self.limit = limit
        self._lock = threading.Lock()
        self._queue: list[_Finishing] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """Attempts queued behind the write that is out."""
        with self._lock:
            return len(self._queue)

    def __call__(self, record: Sequence[Any]) -> int:
        """Record one attempt (:data:`FINISH_RECORD` values); returns its circuit_open_until."""
        item = _Finishing(record)
        with self._lock:
            self._queue.append(item)
            lead = not self._writing
            self._writing = True
        if not lead:
            item.wake.acquire()  # done, or handed the lead
        if not item.done:
            self._write()
        if item.error is not None:
            raise item.error
        return item.opened

    def _write(self) -> None:
        with self._lock:
            batch = self._queue[: self.limit]
            del self._queue[: self.limit]
        try:
            opened = self.scripts.finish_many([item.record for item in batch])
            for item, value in zip(batch, opened, strict=True):
                item.opened = value
        except BaseException as exc:  # every writer waiting on this call learns it failed
            for item in batch:
                item.error = exc
        finally:
            for item in batch:
                item.done = True
                item.wake.release()
            with self._lock:
                if self._queue:
                    self._queue[0].wake.release()  # its turn to write what queued up meanwhile
                else:
                    self._writing = False


def scripts_for(runtime: Runtime) -> EngineScripts:
    """The process's scripts for ``runtime`` (registered on first use)."""
    scripts = _BY_RUNTIME.get(runtime)
    if scripts is None:
        scripts = _BY_RUNTIME[runtime] = EngineScripts(runtime)
    return scripts
