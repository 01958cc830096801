"""publish(): resolve an event's subscribers and write the event, its ticket (for a new
ticket) and one pending delivery per sink target in ONE Redis round trip (publish.lua).

After the write commits, sinks with no live drainer get an rq ``drain`` job (a second
round trip, skipped while drainers are already working a backlog, which is what keeps
rq's per-job bookkeeping off the hot path under load). If the process dies between the
two, the drainer lease it reserved expires and the worker's sweeper enqueues the drain:
the deliveries are already durable.

With ``durability = "replicated"`` a write is acknowledged only once replicas confirmed it
(:mod:`gateway.storage.replication`); when they do not in time, the write has still
happened, so its drainers are woken as for any other, and then
:class:`~gateway.storage.replication.ReplicationTimeout` goes up to the caller (503).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from gateway.delivery.sink_state import UnknownSink
from gateway.delivery.wakeups import enqueue_drains
from gateway.errors import idempotency_key_reused
from gateway.events import Event, UnknownEvent, new_id, utc_now
from gateway.metrics import safely
from gateway.storage.layout import NewDelivery, PublishArgs
from gateway.storage.replication import ReplicationTimeout, acknowledged_pipeline
from gateway.storage.scripts import (
    BACKLOG_PER_DRAINER,
    DRAINER_LEASE_MS,
    PublishReply,
    as_text,
    parse_publish_reply,
)

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.config import SinkConfig
    from gateway.runtime import Integrations, Runtime

log = logging.getLogger("gateway.publish")

TICKET_NUMBER_PLACEHOLDER = "\x01TKT\x01"
# json.dumps escapes the placeholder's control characters; the Lua script looks for them
# raw, which only the real value can produce (user text always stays escaped).
_ENCODED_PLACEHOLDER = json.dumps(TICKET_NUMBER_PLACEHOLDER)
_RAW_PLACEHOLDER = '"' + TICKET_NUMBER_PLACEHOLDER + '"'
MAX_TRANSACTION_TRIES = 50
MAX_STALE_TRIES = 20
"""How often one publish may find the integrations changed under it before it gives up
(503, nothing stored): each time means an admin changed a sink during this very publish."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a :func:`transaction` plan decided: ``write(pipe)`` queues the state change,
    ``events`` are published with it, ``result`` is handed back to the caller."""

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
    filtered: tuple[str, ...] = ()
    """Subscribed sinks whose content filter turned the event away (no delivery)."""


def publish(runtime: Runtime, event: Event, ticket: dict[str, Any] | None = None,
            idempotency_key: str | None = None, now: datetime | None = None,
            only_sink: str | None = None, recheck: Callable[[], None] | None = None,
            body_hash: str = "") -> Published:
    """Store ``event`` (and ``ticket``, whose ``ticket_number`` is assigned here) with its
    deliveries, atomically. With ``idempotency_key`` already used for a ticket, nothing is
    written and the original ticket comes back with ``replayed=True`` when ``body_hash``
    (a digest of the request, stored with the key) is the same as then; with another one,
    :class:`~gateway.errors.ApiError` 422 ``idempotency_key_reused``. ``only_sink`` sends
    the event to that configured sink alone, subscribed or not (test events).

    The deliveries are routed by this process's view of the integrations; when publish.lua
    says a newer version exists, the view is reloaded, ``recheck()`` (if given) re-judges
    the request by it (the receive endpoint's signature: the secret may have changed) and
    the event is routed and published again.
    Raises redis.RedisError when Redis is unavailable: then nothing was written, except
    for :class:`~gateway.storage.direct.WriteUnconfirmed` (sent, its reply lost: it may have been)."""
    now = now or utc_now()
    for _ in range(MAX_STALE_TRIES):
        view = runtime.integrations
        routing = route(runtime, event, only_sink, view)
        args = publish_args(runtime, event, routing.rows, ticket, idempotency_key, now, config_version=view.version,
                            logged=only_sink is None, body_hash=body_hash)
        try:
            reply = runtime.scripts.publish(args)
        except ReplicationTimeout as unconfirmed:
            if unconfirmed.result is not None:
                _unconfirmed(_committed, runtime, event, routing, ticket, parse_publish_reply(unconfirmed.result))
            raise
        if reply.stale_version is None:
            return _committed(runtime, event, routing, ticket, reply)
        runtime.reload()
        if recheck is not None:
            recheck()
    raise redis.WatchError(f"the integrations changed {MAX_STALE_TRIES} times during one publish")


def transaction(runtime: Runtime, watch: Sequence[str], plan: Callable[[Pipeline], Plan],
                now: datetime | None = None) -> tuple[Any, list[Published]]:
    """Read-modify-write plus publish, atomically (optimistic locking).

    ``watch`` keys are WATCHed; ``plan(pipe)`` reads through ``pipe`` (immediate mode)
    and returns a :class:`Plan`: a write and the events to publish with it. The write
    and every event (with its deliveries) then commit in one MULTI/EXEC, or not at all;
    when a watched key changed meanwhile, ``plan`` runs again on fresh data.
    Returns ``(plan.result, [Published per event])``. Raises
    :class:`~gateway.storage.replication.ReplicationTimeout` when the replicas did not
    confirm the write (it was made), else redis.RedisError when Redis is unavailable; then
    nothing was written."""
    now = now or utc_now()
    version_key = runtime.keys.integrations_version
    for _ in range(MAX_TRANSACTION_TRIES):
        with acknowledged_pipeline(runtime.redis, runtime.durability) as pipe:
            try:
                # The integrations version is watched like the plan's keys: the events are
                # routed by the view read here, and a change before EXEC makes it all run again.
                pipe.watch(*watch, version_key)
                stored = pipe.get(version_key)
                if runtime.integrations.version != (as_text(stored) if stored is not None else "0"):
                    runtime.reload()
                planned = plan(pipe)
                pipe.multi()
                if planned.write is not None:
                    planned.write(pipe)
                prepared = [(event, route(runtime, event)) for event in planned.events]
                for event, routing in prepared:
                    runtime.scripts.publish_on(pipe, publish_args(runtime, event, routing.rows, None, None, now,
                                                                  config_version=""))
                replies = pipe.execute()
            except redis.WatchError:
                continue
            except ReplicationTimeout as unconfirmed:
                if unconfirmed.result is not None:
                    _unconfirmed(_all_committed, runtime, prepared, unconfirmed.result)
                raise
        return planned.result, _all_committed(runtime, prepared, replies)
    raise redis.WatchError(f"gave up after {MAX_TRANSACTION_TRIES} conflicting concurrent updates")


def _all_committed(runtime: Runtime, prepared: list[tuple[Event, Routing]],
                   replies: list[Any]) -> list[Published]:
    """:func:`_committed` for each event of a transaction (their replies end its replies)."""
    script_replies = replies[len(replies) - len(prepared):]
    return [_committed(runtime, event, routing, None, parse_publish_reply(reply))
            for (event, routing), reply in zip(prepared, script_replies, strict=True)]


def _unconfirmed(after_commit: Callable[..., object], *args: Any) -> None:
    """The write committed but its replication is unconfirmed: it may well survive, so its
    deliveries get their wake-ups as any other's (``after_commit(*args)``). Failing that
    (Redis gone meanwhile), the sweeper wakes them; the caller's ReplicationTimeout is the
    answer either way."""
    try:
        after_commit(*args)
    except redis.RedisError as exc:
        log.warning("could not wake the drainers of an unconfirmed write: %s", type(exc).__name__)


@dataclasses.dataclass(frozen=True)
class Routing:
    """Where an event goes: one new delivery per (sink, target), and the subscribed sinks
    whose content filter turned it away (they get no delivery, and count it)."""

    rows: tuple[NewDelivery, ...]
    filtered: tuple[str, ...] = ()


def route(runtime: Runtime, event: Event, only_sink: str | None = None,
          view: Integrations | None = None) -> Routing:
    """One new delivery per (subscribed sink whose ``filter`` passes the event, target) of
    ``event`` (or of ``only_sink``: a test event, never ordered nor filtered: the admin asked
    for it), routed by ``view`` (default: the current one), except to the sink a system
    event is about; on a sink with
    ``ordering = "per_ticket"``, in the ordering group of its target and the event's ordering
    key (when the event has one). UnknownSink when ``only_sink`` is none."""
    rows: list[NewDelivery] = []
    filtered: list[str] = []
    view = view or runtime.integrations
    if only_sink:
        if only_sink not in view.configs:
            raise UnknownSink(only_sink)
        sinks: tuple[SinkConfig, ...] = (view.configs[only_sink],)
    else:
        sinks = view.subscribers.get(event.name, ())
    key: str | None = None
    envelope: dict[str, Any] | None = None
    about = _system_subject(runtime, event) if only_sink is None else None
    for sink_config in sinks:
        if sink_config.name == about:
            continue  # no loops: a sink never gets a system event about itself
        if sink_config.filter is not None and only_sink is None:
            if envelope is None:
                envelope = event.envelope()
            if not sink_config.filter.matches(envelope):
                filtered.append(sink_config.name)
                continue
        sink = view.sinks[sink_config.name]
        # A test event (only_sink) goes out at once: its ticket is the catalogue's sample, and
        # it must not wait behind an earlier test that is still being retried.
        ordered = sink_config.ordering == "per_ticket" and only_sink is None
        if ordered and key is None:
            key = _ordering_key(runtime, event)
        for target in sink.targets(event):
            group = ordering_group(target.key, key) if ordered and key else ""
            rows.append(NewDelivery(new_id("dlv_"), sink_config.name, json.dumps(target.to_json()), group,
                                    key if group and key else ""))
    return Routing(tuple(rows), tuple(filtered))


def delivery_rows(runtime: Runtime, event: Event, only_sink: str | None = None,
                  view: Integrations | None = None) -> tuple[NewDelivery, ...]:
    """The deliveries :func:`route` makes for ``event``."""
    return route(runtime, event, only_sink, view).rows


def _system_subject(runtime: Runtime, event: Event) -> str | None:
    """The name of the sink a system event is about; None for any other event."""
    sink = event.data.get("sink")  # ticket events have no "sink": one dict lookup on their path
    if not isinstance(sink, dict) or event.name not in runtime.plugins.catalog:
        return None
    name = sink.get("name")
    return name if runtime.plugins.catalog.get(event.name).system and isinstance(name, str) else None


def _ordering_key(runtime: Runtime, event: Event) -> str:
    """The event's ordering key ("" when it has none, or its type is not catalogued)."""
    try:
        event_type = runtime.plugins.catalog.get(event.name)
    except UnknownEvent:
        return ""
    return event_type.ordering_value(event) or ""


def ordering_group(target_key: str, ordering_key: str) -> str:
    """The ordering group of a delivery: a digest of its target and its ordering key, so a
    fan-out sink keeps the order per target (per Zapier subscription) and a Redis key stays
    short whatever the key's text."""
    return hashlib.sha1(json.dumps([target_key, ordering_key]).encode("utf-8"), usedforsecurity=False).hexdigest()


def ticket_of(event: Event) -> str:
    """The id of the ticket ``event`` is about: its ``ticket``'s id, or a ``ticket_id`` in
    one of its objects (a conversation's); "" when it names none."""
    for key, value in event.data.items():
        if isinstance(value, dict):
            found = value.get("id") if key == "ticket" else value.get("ticket_id")
            if isinstance(found, str) and found:
                return found
    return ""


def publish_args(runtime: Runtime, event: Event, rows: tuple[NewDelivery, ...], ticket: dict[str, Any] | None,
                 idempotency_key: str | None, now: datetime, config_version: str | None = None,
                 logged: bool = True, body_hash: str = "") -> PublishArgs:
    """publish.lua's arguments for ``event`` (and its new ``ticket``) with ``rows``, routed by
    the integrations at ``config_version`` (default: the current view's; "" = not checked).
    ``logged``: the event goes into its ticket's log (not a test event's sample ticket)."""
    settings = runtime.settings
    return PublishArgs(
        prefix=settings.key_prefix,
        config_version=runtime.integrations.version if config_version is None else config_version,
        body_hash=body_hash if idempotency_key else "",
        now_ms=int(now.timestamp() * 1000),
        idempotency_key=runtime.keys.idempotency(idempotency_key) if idempotency_key else "",
        idempotency_ttl_s=settings.idempotency_ttl,
        ticket_year=str(now.year) if ticket is not None else "",
        ticket_id=ticket["id"] if ticket is not None else "",
        ticket_json=_raw(json.dumps(ticket, separators=(",", ":"), ensure_ascii=False, allow_nan=False))
        if ticket is not None else "",
        event_id=event.id,
        event_name=event.name,
        event_json=_raw(event.to_json()),
        event_ttl_s=int(settings.retention_days * 86400),
        ticket_ref=(ticket["id"] if ticket is not None else ticket_of(event)) if logged else "",
        max_drainers=runtime.max_drainers,
        drainer_lease_ms=DRAINER_LEASE_MS,
        backlog_per_drainer=BACKLOG_PER_DRAINER,
        deliveries=rows,
    )


def _committed(runtime: Runtime, event: Event, routing: Routing, ticket: dict[str, Any] | None,
               reply: PublishReply) -> Published:
    """After the write committed: wake drainers, count it, tell observers, say what was written."""
    if reply.key_reused:  # nothing was written
        raise idempotency_key_reused()
    rows = routing.rows
    if reply.replayed_ticket_json is not None:
        return Published(event, (), (), json.loads(reply.replayed_ticket_json), replayed=True)
    if ticket is not None:
        filled = {**ticket, "ticket_number": reply.ticket_number}
        event = _fill_ticket_number(event, ticket, filled)
        ticket = filled
    if reply.wakes:
        enqueue_drains(runtime, reply.wakes)
    safely("event", lambda: runtime.metrics.observe_event(event))
    if routing.filtered:
        safely("filtered event", lambda: runtime.metrics.observe_filtered(event, routing.filtered))
    sinks = tuple(dict.fromkeys(row.sink for row in rows))
    try:
        runtime.plugins.hook.event_published(event=event, sinks=sinks, context=runtime.context)
    except Exception:
        # The event is already stored and acknowledged: an observer's bug must not turn
        # that into an error response, which would make the client retry and duplicate it.
        log.exception("an event_published hook failed for %s %s", event.name, event.id)
    return Published(event, tuple(row.id for row in rows), sinks, ticket, filtered=routing.filtered)


def _raw(encoded: str) -> str:
    return encoded.replace(_ENCODED_PLACEHOLDER, _RAW_PLACEHOLDER)


def _fill_ticket_number(event: Event, ticket: dict[str, Any], filled: dict[str, Any]) -> Event:
    # The placeholder only ever stands as a ticket's ticket_number at the top of the data
    # (receive puts the new ticket there); no JSON round trip of the whole event.
    data = {key: filled if value is ticket or (isinstance(value, dict) and value.get("ticket_number")
                                                == TICKET_NUMBER_PLACEHOLDER) else value
            for key, value in event.data.items()}
    return Event(event.id, event.name, event.timestamp, data)
