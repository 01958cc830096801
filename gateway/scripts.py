"""The delivery engine's Lua scripts (``gateway/lua/*.lua``), registered once per process.

Each method is one Redis round trip and one atomic step of the protocol described in
``docs/delivery-engine.md``: claim, release, finish, requeue (retry / replay / wake) and
sweep. ``wake.lua`` holds the shared "does this sink need a drainer?" rule and is
prepended to the scripts that wake drainers.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from gateway.bus import BACKLOG_PER_DRAINER, DRAINER_LEASE_MS, load_lua

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

SWEEP_MAX_DRAINERS = 1_000_000
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
    """What one claim returned; ``status`` is ok / empty / held / full / probe / rate."""

    status: str
    wait_ms: int
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
        for item in reply[2:]:
            raw_id, flat, event = item
            fields = {as_text(flat[i]): as_text(flat[i + 1]) for i in range(0, len(flat), 2)}
            claimed.append(ClaimedDelivery(as_text(raw_id), fields, as_text(event) if event else None))
        return ClaimResult(as_text(reply[0]), int(reply[1]), tuple(claimed))

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


def scripts_for(runtime: Runtime) -> EngineScripts:
    """The process's scripts for ``runtime`` (registered on first use)."""
    scripts = _BY_RUNTIME.get(runtime)
    if scripts is None:
        scripts = _BY_RUNTIME[runtime] = EngineScripts(runtime)
    return scripts
