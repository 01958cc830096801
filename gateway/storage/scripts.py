"""The Lua scripts (``gateway/storage/lua/*.lua``), registered once per process, with typed calls.

Each call is one Redis round trip and one atomic step of the protocols described in
``docs/delivery-engine.md``: publish; claim, release, finish, requeue (retry / replay /
wake) and sweep. Every script starts with the Lua that unpacks its arguments by name
(:mod:`gateway.storage.layout`), then the shared Lua it uses (:data:`LIBRARIES`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import redis

from gateway.storage.direct import DirectScript
from gateway.storage.layout import (
    AttemptRecord,
    CancelArgs,
    ClaimArgs,
    FailureSummariesArgs,
    FinishArgs,
    PublishArgs,
    ReleaseArgs,
    RequeueArgs,
    RequeueRow,
    ScriptArgs,
    SweepArgs,
    lua_prelude,
)
from gateway.storage.replication import LOCAL, Durability

if TYPE_CHECKING:  # pragma: no cover, no mutate (imports for annotations only)
    from redis.client import Pipeline

DRAINER_LEASE_MS = 30_000
"""How long a drainer's lease on a sink lasts without being renewed."""
BACKLOG_PER_DRAINER = 64
"""Ready deliveries one drainer is expected to keep up with: a bigger backlog wakes another."""
SWEEP_MAX_DRAINERS = 1_000_000
"""No cap on drainers in a sweep beyond "one per process and sink" (see :meth:`Scripts.sweep`)."""
LIBRARIES: dict[type[ScriptArgs], tuple[str, ...]] = {
    PublishArgs: ("wake", "ordering"),
    ClaimArgs: ("lanes",),
    FinishArgs: ("ordering", "lanes", "failures"),
    FailureSummariesArgs: ("failures",),
    RequeueArgs: ("wake", "ordering", "lanes"),
    SweepArgs: ("wake", "lanes"),
    CancelArgs: ("ordering", "lanes"),
}
"""The shared Lua each script is registered with, prepended in this order: ``wake`` (does
a sink need a drainer?), ``ordering`` (per-ticket order: join a group's queue, and
``order_leave``, the one place an ended delivery releases the next), ``lanes`` (per-target
state of fan-out sinks), ``failures`` (a sink's failures counted for its delivery.failed
summary, and the claim of that summary). A script that ends deliveries in a new way includes
``ordering`` and calls ``order_leave``."""


def load_lua(name: str) -> str:
    """The text of ``gateway/storage/lua/<name>.lua``."""
    return resources.files("gateway.storage").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def script_source(layout: type[ScriptArgs]) -> str:
    """The full source registered for ``layout``'s script: argument prelude, the shared Lua
    it uses (:data:`LIBRARIES`), then the script itself."""
    parts = [lua_prelude(layout)]
    parts.extend(load_lua(name) for name in LIBRARIES.get(layout, ()))
    parts.append(load_lua(layout.SCRIPT))
    return "\n".join(parts)


def now_ms() -> int:
    """Wall-clock milliseconds, the unit every engine timestamp in Redis uses."""
    return int(time.time() * 1000)


def as_text(value: Any) -> str:
    """A Redis reply value as str."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def text_pairs(flat: Sequence[Any]) -> dict[str, str]:
    """A flat ``[field, value, ...]`` reply (a hash as HGETALL gives it) as a dict of str.

    Decoded in bulk: ``map`` runs C's ``bytes.decode`` over the whole reply, where
    :func:`as_text` per field and value was a Python call, an ``isinstance`` and a
    ``decode`` each (a claimed delivery's hash has a dozen fields: ~70 calls of the
    ~130 a claim cost per delivery). A reply that is not all bytes (a client with
    ``decode_responses``, a number) takes :func:`as_text`'s way, with the same result."""
    try:
        texts = iter(map(bytes.decode, flat))
        return dict(zip(texts, texts, strict=True))
    except TypeError:
        texts = iter(map(as_text, flat))
        return dict(zip(texts, texts, strict=True))


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class PublishReply:
    """What publish.lua answered: ``replay`` with the original ticket's JSON (nothing was
    written), or the new ticket number ("" when no ticket) and the drainers to wake, or
    ``stale_version``: the integrations changed since the caller routed the event (nothing
    was written; reload and publish again), or ``key_reused``: the idempotency key is known
    with another body (nothing was written)."""

    replayed_ticket_json: str | None
    ticket_number: str
    wakes: tuple[tuple[str, str], ...]
    stale_version: str | None = None
    key_reused: bool = False


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class ClaimedDelivery:
    """A delivery a drainer claimed: its stored hash and its event's storage JSON (None
    when the event has expired)."""

    id: str
    fields: dict[str, str]
    event_json: str | None


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class ClaimResult:
    """What one claim returned; ``status`` is ok / empty / held / full / probe / rate;
    ``room``: the sink's free in-flight slots left (0 at its cap)."""

    status: str
    wait_ms: int
    room: int = 0  # pragma: no mutate (every ClaimResult is built with its room: the default is never used)
    deliveries: tuple[ClaimedDelivery, ...] = ()
    config_version: str | None = None
    """The integrations version read right after the claim (same round trip): a drainer
    holding an older one reloads before attempting what it claimed."""


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class FailureSummary:
    """A sink's failures reported in one delivery.failed summary: how many since the
    previous summary, since when (ms), and the latest as the attempt described it."""

    sink: str
    count: int
    since_ms: int
    last: dict[str, Any]


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class Finished:
    """What finish.lua did with one attempt beyond recording it (each transition is
    reported by exactly one attempt, whichever process finished it)."""

    open_until: int = 0
    """> 0: this attempt opened or re-opened a circuit until then (ms): wake the sink then."""
    circuit: str = ""
    """"opened" (it was closed), "reopened" (a probe failed), "closed", or ""."""
    opened_at: int = 0
    """When the circuit first opened (ms), for "opened" and "closed"."""
    paused: bool = False
    """This attempt paused a sink that was not paused."""


def parse_finished(reply: Sequence[Any]) -> Finished:
    """One attempt's answer from finish.lua."""
    return Finished(int(reply[0]), as_text(reply[1]), int(reply[2]), bool(int(reply[3])))


def _json_object(raw: Any) -> dict[str, Any]:
    try:
        doc = json.loads(as_text(raw)) if raw else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class RequeueResult:
    """What a requeue did: per delivery id its outcome (queued / missing / stale / busy),
    and the (sink, token) drainers it reserved, whose rq drain jobs the caller enqueues."""

    queued: int
    outcomes: dict[str, str]
    wakes: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class SweepResult:
    """One sweep: drainer tokens reserved for the caller to run itself, sinks that are not
    configured but have ready work, and how many expired in-flight leases were put back."""

    starts: list[tuple[str, str]]
    unconfigured: list[str]
    recovered: int


def parse_publish_reply(reply: Sequence[Any]) -> PublishReply:
    """Read publish.lua's answer (from a direct call or a pipeline)."""
    if as_text(reply[0]) == "replay":
        return PublishReply(as_text(reply[1]), "", ())
    if as_text(reply[0]) == "stale":
        return PublishReply(None, "", (), stale_version=as_text(reply[1]))
    if as_text(reply[0]) == "reused":
        return PublishReply(None, "", (), key_reused=True)
    wakes = tuple((as_text(reply[i]), as_text(reply[i + 1])) for i in range(2, len(reply), 2))
    return PublishReply(None, as_text(reply[1]), wakes)


class Scripts:
    """Every script, registered on one client for one key prefix. A runtime has one
    (``runtime.scripts``); registering computes SHA1s locally and costs no round trip."""

    def __init__(self, client: redis.Redis, prefix: str, max_drainers: int, retention_ms: int,
                 durability: Durability = LOCAL) -> None:
        self.client = client
        self.durability = durability
        self.prefix = prefix
        self.max_drainers = max_drainers
        self.retention_ms = retention_ms
        # publish.lua runs on the receive path: over a plain socket, without redis-py's
        # per-command overhead (see gateway.storage.direct); in a transaction, through redis-py.
        self._publish = DirectScript(client, script_source(PublishArgs))
        self._claim = client.register_script(script_source(ClaimArgs))
        self._release = client.register_script(script_source(ReleaseArgs))
        self._finish = client.register_script(script_source(FinishArgs))
        # finish.lua runs once per group of finished attempts, from every delivery thread:
        # over connections of its own too (no pool lock shared with the drainers' claims).
        self._finish_direct = DirectScript(client, script_source(FinishArgs))
        self._requeue = client.register_script(script_source(RequeueArgs))
        self._sweep = client.register_script(script_source(SweepArgs))
        self._cancel = client.register_script(script_source(CancelArgs))
        self._failure_summaries = client.register_script(script_source(FailureSummariesArgs))
        self.version_key = f"{prefix}integrations:version"

    # -- publish --------------------------------------------------------------------------
    def publish(self, args: PublishArgs) -> PublishReply:
        """Run publish.lua now, confirmed by replicas when the durability says so. Raises
        :class:`~gateway.storage.replication.ReplicationTimeout` (written, not confirmed:
        its ``result`` is the reply, for :func:`parse_publish_reply`),
        :class:`~gateway.storage.direct.WriteUnconfirmed` (sent, reply lost: it may have been
        written), else redis.RedisError (then nothing was written)."""
        return parse_publish_reply(self._publish(args.argv(), self.durability))

    def publish_on(self, pipe: Pipeline, args: PublishArgs) -> None:
        """Queue publish.lua on ``pipe`` (a MULTI); read its reply with :func:`parse_publish_reply`."""
        self._publish.script(args=args.argv(), client=pipe)

    # -- the drainer protocol ---------------------------------------------------------------
    def claim(self, sink: str, token: str, n: int, max_in_flight: int, inflight_lease_ms: int,
              rate_interval_ms: int, fan_out: bool = False) -> ClaimResult:
        """Claim up to ``n`` ready deliveries of ``sink`` (see claim.lua; with ``fan_out`` the
        cap, rate limit and circuit apply per target), and read the integrations version after
        it in the same round trip."""
        argv = ClaimArgs(self.prefix, sink, token, now_ms(), DRAINER_LEASE_MS, max_in_flight, n,
                         inflight_lease_ms, rate_interval_ms, int(fan_out)).argv()
        with self.client.pipeline(transaction=False) as pipe:
            # EVALSHA by hand: redis-py's Script in a pipeline costs a SCRIPT EXISTS round trip.
            pipe.evalsha(self._claim.sha, 0, *argv)
            pipe.get(self.version_key)
            reply, version = pipe.execute(raise_on_error=False)
        if isinstance(reply, redis.exceptions.NoScriptError):
            # Redis lost its script cache (a restart): load it with this call; the version
            # read above came before the claim, so read it again after.
            reply = self._claim(args=argv)
            version = self.client.get(self.version_key)
        for answer in (reply, version):
            if isinstance(answer, Exception):
                raise answer
        claimed = []
        for item in reply[3:]:
            raw_id, flat, event = item
            claimed.append(ClaimedDelivery(as_text(raw_id), text_pairs(flat), as_text(event) if event else None))
        return ClaimResult(as_text(reply[0]), int(reply[1]), int(reply[2]), tuple(claimed),
                           as_text(version) if version is not None else "0")

    def release(self, sink: str, token: str) -> bool:
        """Stop draining ``sink`` unless work arrived meanwhile; True when released."""
        return bool(self._release(args=ReleaseArgs(self.prefix, sink, token, now_ms(), DRAINER_LEASE_MS).argv()))

    def touch(self, sink: str, token: str) -> None:
        """Extend a drainer's lease while it waits without claiming."""
        self.client.zadd(f"{self.prefix}drainers:{sink}", {token: now_ms() + DRAINER_LEASE_MS})

    def drop(self, sink: str, token: str) -> None:
        """Give up a drainer lease unconditionally (shutdown); the sweeper re-wakes the sink."""
        self.client.zrem(f"{self.prefix}drainers:{sink}", token)

    def finish(self, records: Sequence[AttemptRecord]) -> list[Finished]:
        """Record finished attempts in one finish.lua call, in order. Returns what each one
        did to its sink's circuit and pause."""
        argv = FinishArgs(self.prefix, tuple(records)).argv()
        return [parse_finished(reply) for reply in self._finish_direct(argv)]

    def finish_on(self, pipe: Pipeline, record: AttemptRecord) -> None:
        """Queue finish.lua for one attempt on ``pipe`` (a MULTI with the retry's rq job).
        EVALSHA by hand: redis-py's Script in a pipeline costs a SCRIPT EXISTS round trip."""
        pipe.evalsha(self._finish.sha, 0, *FinishArgs(self.prefix, (record,)).argv())

    def failure_summaries(self, window_ms: int, limit: int = 100) -> list[FailureSummary]:
        """Claim the failure summaries that are due (see failure_summaries.lua)."""
        reply = self._failure_summaries(args=FailureSummariesArgs(self.prefix, now_ms(), window_ms, limit).argv())
        return [FailureSummary(as_text(sink), int(count), int(since), _json_object(last))
                for sink, count, since, last in reply]

    def requeue(self, mode: str, deliveries: Sequence[tuple[str, str]] = (), wake_sinks: Iterable[str] = (),
                keep_order: bool = False) -> RequeueResult:  # pragma: no mutate (read by replays only; each passes it)
        """Push deliveries back on their ready lists (``mode`` "retry": only when still
        retrying with the expected attempt count; "replay": back to pending, same id; with
        ``keep_order`` an ordered one joins the end of its ticket's queue instead) and
        reserve drainers for their sinks and ``wake_sinks`` (the caller enqueues their jobs)."""
        args = RequeueArgs(self.prefix, now_ms(), self.max_drainers, DRAINER_LEASE_MS, BACKLOG_PER_DRAINER, mode,
                           int(keep_order), f"drain-{uuid.uuid4().hex}-",
                           tuple(RequeueRow(i, e) for i, e in deliveries),
                           tuple(wake_sinks))
        reply = self._requeue(args=args.argv())
        outcomes = {as_text(i): as_text(o) for i, o in reply[1]}
        wakes = tuple((as_text(reply[i]), as_text(reply[i + 1])) for i in range(2, len(reply), 2))
        return RequeueResult(int(reply[0]), outcomes, wakes)

    def cancel(self, sink: str, ids: Sequence[str], reason: str, message: str, claimed: bool = False,
               last: bool = False) -> int:
        """End the waiting ones of ``ids`` (deliveries of ``sink``) as ``cancelled`` with
        ``reason`` (see cancel.lua); returns how many were."""
        args = CancelArgs(self.prefix, sink, now_ms(), reason, message, self.retention_ms // 1000,
                          1 if claimed else 0, 1 if last else 0, tuple(ids))
        return int(self._cancel(args=args.argv()))

    def sweep(self, configured: Sequence[str], draining: Iterable[str]) -> SweepResult:
        """One sweeper pass (see sweep.lua); also trims the log's indexes to the retention."""
        now = now_ms()
        # No cap on drainers here beyond "one per process and sink" (``draining``): the
        # busy process may hold every wake-up token, and an idle one must still be able to join.
        args = SweepArgs(self.prefix, now, SWEEP_MAX_DRAINERS, DRAINER_LEASE_MS, BACKLOG_PER_DRAINER,
                         f"drain-sweep-{uuid.uuid4().hex}-", now - self.retention_ms, tuple(configured),
                         tuple(draining))
        reply = self._sweep(args=args.argv())
        starts = [(as_text(sink), as_text(token)) for sink, token in reply[0]]
        return SweepResult(starts, [as_text(s) for s in reply[1]], int(reply[2]))
