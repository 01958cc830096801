"""The ticket store: read, list and change tickets kept in Redis.

Tickets are created by the receive endpoint through :func:`create_ticket` (one publish.lua
call that also assigns ``TKT-<year>-<seq>``). This module creates them, reads them back and
applies admin changes; a change and the events it causes (``ticket.updated``, plus
``ticket.resolved`` / ``ticket.escalated`` on those transitions) commit together or not
at all, so a consumer never sees an event for a change that was lost, nor the reverse.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from gateway.events import Event, iso_z, utc_now
from gateway.publish.publisher import TICKET_NUMBER_PLACEHOLDER, Plan, Published, publish, transaction
from gateway.storage.scripts import as_text

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

MAX_PAGE = 200
PATCHABLE = ("status", "priority", "category")
# A status change into one of these publishes the named event after ticket.updated.
TRANSITION_EVENTS = {"resolved": "ticket.resolved", "escalated": "ticket.escalated"}


class TicketNotFound(KeyError):
    """No ticket has that id."""


class InvalidCursor(ValueError):
    """A ``cursor`` that this store did not hand out."""


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of tickets, newest first; ``next_cursor`` is None on the last page."""

    tickets: list[dict[str, Any]]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True)
class Change:
    """The outcome of :meth:`TicketStore.patch`."""

    ticket: dict[str, Any]
    changed: tuple[str, ...]
    published: tuple[Published, ...]

    @property
    def event_names(self) -> list[str]:
        """Names of the events the change published, in order."""
        return [p.event.name for p in self.published]


def encode_cursor(score: float, ticket_id: str) -> str:
    """An opaque cursor pointing just after (``score``, ``ticket_id``) in newest-first order."""
    return base64.urlsafe_b64encode(f"{score!r}:{ticket_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The inverse of :func:`encode_cursor`; :class:`InvalidCursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, ticket_id = raw.split(":", 1)
        value = float(score)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(score)
        return value, ticket_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(cursor) from None


class TicketStore:
    """Tickets in Redis (keys in :mod:`gateway.storage.keys`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.redis = runtime.redis
        self.keys = runtime.keys

    def get(self, ticket_id: str) -> dict[str, Any]:
        """The ticket; :class:`TicketNotFound` when there is none."""
        raw = self.redis.get(self.keys.ticket(ticket_id))
        if raw is None:
            raise TicketNotFound(ticket_id)
        return json.loads(raw)

    def list(self, limit: int = 50, cursor: str | None = None) -> Page:
        """Tickets newest first, ``limit`` per page; pass the previous page's ``next_cursor``
        to continue. A cursor is a position (time, id), not an offset, so tickets created
        while paging neither repeat nor shift later pages."""
        limit = max(1, min(limit, MAX_PAGE))
        if cursor is None:
            max_score: str | float = "+inf"
            after_id = None
        else:
            max_score, after_id = decode_cursor(cursor)
        chosen: list[tuple[str, float]] = []
        offset = 0
        # Several tickets can share a millisecond: fetch from the cursor's score inclusive and
        # skip the ones at that score already returned (ZREVRANGEBYSCORE orders ties by id, desc).
        while len(chosen) <= limit:
            batch = cast(list[tuple[bytes, float]], self.redis.zrevrangebyscore(
                self.keys.tickets, max_score, "-inf", start=offset, num=limit + 1, withscores=True))
            if not batch:
                break
            offset += len(batch)
            for member, score in batch:
                ticket_id = as_text(member)
                if after_id is not None and score == max_score and ticket_id >= after_id:
                    continue
                chosen.append((ticket_id, score))
        has_more = len(chosen) > limit
        chosen = chosen[:limit]
        tickets: list[dict[str, Any]] = []
        if chosen:
            raws = self.redis.mget([self.keys.ticket(ticket_id) for ticket_id, _ in chosen])
            tickets = [json.loads(raw) for raw in raws if raw is not None]
        next_cursor = encode_cursor(chosen[-1][1], chosen[-1][0]) if has_more else None
        return Page(tickets, next_cursor)

    def patch(self, ticket_id: str, changes: Mapping[str, Any]) -> Change:
        """Apply ``changes`` (any of status, priority, category; already validated) and publish
        ``ticket.updated`` plus ``ticket.resolved``/``ticket.escalated`` on those status
        transitions, in one transaction. A change that alters nothing publishes nothing.
        Raises :class:`TicketNotFound`, or redis.RedisError (then nothing was written)."""
        key = self.keys.ticket(ticket_id)

        def plan(pipe: Pipeline) -> Plan:
            raw = pipe.get(key)
            if raw is None:
                raise TicketNotFound(ticket_id)
            current = json.loads(raw)
            changed = tuple(f for f in PATCHABLE if f in changes and current.get(f) != changes[f])
            if not changed:
                return Plan(result=Change(current, (), ()))
            now = utc_now()
            updated = {**current, **{f: changes[f] for f in changed}, "updated_at": iso_z(now)}
            events = [Event.new("ticket.updated", {"ticket": updated}, at=now)]
            transition = TRANSITION_EVENTS.get(updated["status"]) if "status" in changed else None
            if transition:
                events.append(Event.new(transition, {"ticket": updated}, at=now))
            encoded = json.dumps(updated, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

            def write(tx: Pipeline) -> None:
                tx.set(key, encoded)

            return Plan(result=Change(updated, changed, ()), events=events, write=write)

        change, published = transaction(self.runtime, [key], plan)
        return dataclasses.replace(change, published=tuple(published))


def new_ticket(data: Mapping[str, Any], now: datetime, source: str = "webhook") -> dict[str, Any]:
    """A ticket from validated data, created by ``source``; its ticket_number is assigned
    by the write."""
    return {
        "id": str(uuid.uuid4()),
        "ticket_number": TICKET_NUMBER_PLACEHOLDER,
        "subject": data["subject"],
        "message": data["message"],
        "status": "new",
        "priority": data["priority"],
        "category": data["category"],
        "customer_email": data["customer_email"],
        "customer_name": data["customer_name"],
        "source": source,
        "created_at": iso_z(now),
    }


def create_ticket(runtime: Runtime, data: Mapping[str, Any], key: str | None, source: str = "webhook",
                  recheck: Callable[[], None] | None = None, body_hash: str = "") -> Published:
    """Store a new ticket (created by ``source``) with its ticket.created event and
    deliveries, in one write (or find the ticket an earlier request with ``key`` and the
    same ``body_hash`` created; another hash is a 422 ``idempotency_key_reused``).
    ``recheck`` as for :func:`~gateway.publish.publisher.publish`. Raises redis.RedisError."""
    now = utc_now()
    ticket = new_ticket(data, now, source)
    event = Event.new("ticket.created", {"ticket": ticket}, timestamp=ticket["created_at"])
    return publish(runtime, event, ticket=ticket, idempotency_key=key, now=now, recheck=recheck,
                   body_hash=body_hash)


def body_digest(body: bytes) -> str:
    """The digest stored with an idempotency key: of the raw request body (the receive
    endpoint), or of a plugin's fields as canonical JSON."""
    return hashlib.sha256(body).hexdigest()
