"""publish(): resolve an event's subscribers and write the event, its ticket (for a new
ticket) and one pending delivery per sink target in ONE Redis round trip.

After the write commits, sinks with no live drainer get an rq ``drain`` job (a second
round trip, skipped while drainers are already working a backlog, which is what keeps
rq's per-job bookkeeping off the hot path under load). If the process dies between the
two, the drainer lease it reserved expires and the worker's sweeper enqueues the drain:
the deliveries are already durable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from gateway.events import Event, new_id
from gateway.redis_direct import DirectScript

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

log = logging.getLogger("gateway.bus")

TICKET_NUMBER_PLACEHOLDER = "\x01TKT\x01"
# json.dumps escapes the placeholder's control characters; the Lua script looks for them
# raw, which only the real value can produce (user text always stays escaped).
_ENCODED_PLACEHOLDER = json.dumps(TICKET_NUMBER_PLACEHOLDER)
_RAW_PLACEHOLDER = '"' + TICKET_NUMBER_PLACEHOLDER + '"'
DRAIN_JOB = "gateway.jobs.drain"
DRAINER_LEASE_MS = 30_000
BACKLOG_PER_DRAINER = 64
MAX_TRANSACTION_TRIES = 50


def load_lua(name: str) -> str:
    """The text of ``gateway/lua/<name>.lua``."""
    return resources.files("gateway").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a :meth:`Publisher.transaction` plan decided: ``write(pipe)`` queues the state
    change, ``events`` are published with it, ``result`` is handed back to the caller."""

    result: Any = None
    events: Sequence[Event] = ()
    write: Callable[[Pipeline], None] | None = None


@dataclasses.dataclass(frozen=True)
class Published:
    """What a publish wrote."""

    event: Event
    delivery_ids: tuple[str, ...]
    sinks: tuple[str, ...]
    ticket: dict[str, Any] | None = None
    replayed: bool = False


class Publisher:
    """Writes events. One per process, built at start-up (script and queue warmed)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.script = runtime.redis.register_script(load_lua("publish"))
        # The same script for publish(), without redis-py's per-command overhead; inside
        # transaction() it runs on the pipeline through self.script.
        self.direct = DirectScript(runtime.redis, self.script.script)

    def _deliveries(self, event: Event, only_sink: str | None = None) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        sinks = (self.runtime.sink_config(only_sink),) if only_sink else self.runtime.subscribers(event.name)
        for sink_config in sinks:
            sink = self.runtime.sinks[sink_config.name]
            for target in sink.targets(event):
                rows.append((new_id("dlv_"), sink_config.name, json.dumps(target.to_json())))
        return rows

    def _args(self, event: Event, rows: list[tuple[str, str, str]], ticket: dict[str, Any] | None,
              idempotency_key: str | None, now: datetime) -> list[Any]:
        settings = self.runtime.settings
        args: list[Any] = [
            settings.key_prefix, int(now.timestamp() * 1000),
            self.runtime.keys.idempotency(idempotency_key) if idempotency_key else "",
            settings.idempotency_ttl,
            str(now.year) if ticket is not None else "",
            ticket["id"] if ticket is not None else "",
            _raw(json.dumps(ticket, separators=(",", ":"), ensure_ascii=False)) if ticket is not None else "",
            event.id, _raw(event.to_json()), int(settings.retention_days * 86400),
            self.runtime.max_drainers, DRAINER_LEASE_MS, BACKLOG_PER_DRAINER, len(rows), event.name,
        ]
        for row in rows:
            args.extend(row)
        return args

    def publish(self, event: Event, ticket: dict[str, Any] | None = None, idempotency_key: str | None = None,
                now: datetime | None = None, only_sink: str | None = None) -> Published:
        """Store ``event`` (and ``ticket``, whose ``ticket_number`` is assigned here) with its
        deliveries, atomically. With ``idempotency_key`` already used for a ticket, nothing is
        written and the original ticket comes back with ``replayed=True``. ``only_sink`` sends
        the event to that configured sink alone, subscribed or not (test events).
        Raises redis.RedisError when Redis is unavailable; then nothing was written."""
        from gateway.events import utc_now

        now = now or utc_now()
        rows = self._deliveries(event, only_sink)
        reply = self.direct(self._args(event, rows, ticket, idempotency_key, now))
        return self._finish(event, rows, ticket, reply)

    def _finish(self, event: Event, rows: list[tuple[str, str, str]], ticket: dict[str, Any] | None,
                reply: list[Any]) -> Published:
        """After the write committed: wake drainers, tell observers, say what was written."""
        status = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        if status == "replay":
            return Published(event, (), (), json.loads(reply[1]), replayed=True)
        number = reply[1].decode() if isinstance(reply[1], bytes) else reply[1]
        if ticket is not None:
            filled = {**ticket, "ticket_number": number}
            event = _fill_ticket_number(event, ticket, filled)
            ticket = filled
        wake = [(reply[i].decode(), reply[i + 1].decode()) for i in range(2, len(reply), 2)]
        if wake:
            self.wake(wake)
        sinks = tuple(dict.fromkeys(row[1] for row in rows))
        try:
            self.runtime.plugins.hook.event_published(event=event, sinks=sinks, context=self.runtime.context)
        except Exception:
            # The event is already stored and acknowledged: an observer's bug must not turn
            # that into an error response, which would make the client retry and duplicate it.
            log.exception("an event_published hook failed for %s %s", event.name, event.id)
        return Published(event, tuple(row[0] for row in rows), sinks, ticket)

    def transaction(self, watch: Sequence[str], plan: Callable[[Pipeline], Plan],
                    now: datetime | None = None) -> tuple[Any, list[Published]]:
        """Read-modify-write plus publish, atomically (optimistic locking).

        ``watch`` keys are WATCHed; ``plan(pipe)`` reads through ``pipe`` (immediate mode)
        and returns a :class:`Plan`: a write and the events to publish with it. The write
        and every event (with its deliveries) then commit in one MULTI/EXEC, or not at all;
        when a watched key changed meanwhile, ``plan`` runs again on fresh data.
        Returns ``(plan.result, [Published per event])``. Raises redis.RedisError when
        Redis is unavailable; then nothing was written."""
        import redis

        from gateway.events import utc_now

        now = now or utc_now()
        for _ in range(MAX_TRANSACTION_TRIES):
            with self.runtime.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watch)
                    planned = plan(pipe)
                    pipe.multi()
                    if planned.write is not None:
                        planned.write(pipe)
                    prepared = [(event, self._deliveries(event)) for event in planned.events]
                    for event, rows in prepared:
                        self.script(args=self._args(event, rows, None, None, now), client=pipe)
                    replies = pipe.execute()
                except redis.WatchError:
                    continue
            script_replies = replies[len(replies) - len(prepared):]
            published = [self._finish(event, rows, None, reply)
                         for (event, rows), reply in zip(prepared, script_replies)]
            return planned.result, published
        raise redis.WatchError(f"gave up after {MAX_TRANSACTION_TRIES} conflicting concurrent updates")

    def wake(self, drains: list[tuple[str, str]]) -> None:
        """Enqueue one rq drain job per (sink, drainer token), in one round trip. A failure
        here loses nothing: the sweeper re-wakes sinks whose ready list has no live drainer."""
        import redis

        queue = self.runtime.queue
        try:
            with self.runtime.redis.pipeline(transaction=False) as pipe:
                for sink, token in drains:
                    queue.enqueue_call(DRAIN_JOB, args=(sink, token), job_id=token, pipeline=pipe,
                                       result_ttl=0, failure_ttl=86400, timeout=-1)
                pipe.execute()
        except redis.RedisError:
            pass


def _raw(encoded: str) -> str:
    return encoded.replace(_ENCODED_PLACEHOLDER, _RAW_PLACEHOLDER)


def _fill_ticket_number(event: Event, ticket: dict[str, Any], filled: dict[str, Any]) -> Event:
    # The placeholder only ever stands as a ticket's ticket_number at the top of the data
    # (receive puts the new ticket there); no JSON round trip of the whole event.
    data = {key: filled if value is ticket or (isinstance(value, dict) and value.get("ticket_number")
                                                == TICKET_NUMBER_PLACEHOLDER) else value
            for key, value in event.data.items()}
    return Event(event.id, event.name, event.timestamp, data)
