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
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from gateway.events import Event, iso_z, utc_now
from gateway.integrations import audit
from gateway.publish.publisher import TICKET_NUMBER_PLACEHOLDER, Plan, Published, publish, transaction
from gateway.storage.scripts import as_text

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

MAX_PAGE = 200
SCAN_LIMIT = 5000
"""At most this many tickets are looked at for one page of a search."""
WALK_BATCH = 200
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
    complete: bool = True
    """False when a search stopped at its scan limit before filling the page: older tickets
    may match too (``next_cursor`` goes on from where it stopped)."""
    scanned: int = 0
    """How many tickets the page looked at."""


_NUMBER = re.compile(r"TKT-\d{4}-\d{3,}")


@dataclasses.dataclass(frozen=True)
class TicketQuery:
    """What a ticket search asks for; empty fields match every ticket."""

    text: str = ""
    """Part of a ticket number, customer email or subject (any case)."""
    status: str = ""
    priority: str = ""

    @property
    def number(self) -> str:
        """The ticket number ``text`` is, upper-cased ("" when it is not one)."""
        candidate = self.text.strip().upper()
        return candidate if _NUMBER.fullmatch(candidate) else ""

    def matches(self, ticket: Mapping[str, Any]) -> bool:
        """Whether ``ticket`` answers this query."""
        if self.status and ticket.get("status") != self.status:
            return False
        if self.priority and ticket.get("priority") != self.priority:
            return False
        needle = self.text.strip().casefold()
        if not needle:
            return True
        return any(needle in str(ticket.get(field) or "").casefold()
                   for field in ("ticket_number", "customer_email", "subject"))


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
        return self.search(TicketQuery(), limit=limit, cursor=cursor)

    def search(self, query: TicketQuery, limit: int = 50, cursor: str | None = None,
               scan_limit: int = SCAN_LIMIT) -> Page:
        """Tickets matching ``query``, newest first, a page at a time (cursors as for
        :meth:`list`). A ticket number is looked up in its index; anything else is matched
        while walking the tickets newest first, at most ``scan_limit`` of them per page, so
        a search costs the same however many tickets are kept: past that the page ends
        with ``complete=False`` and a cursor to look further back."""
        limit = max(1, min(limit, MAX_PAGE))
        if query.number and cursor is None:
            numbered = self.redis.hget(self.keys.ticket_numbers, query.number)
            if numbered is not None:
                try:
                    match = self.get(as_text(numbered))
                except TicketNotFound:
                    return Page([], None)
                return Page([match] if query.matches(match) else [], None, scanned=1)
        found: list[tuple[float, str, dict[str, Any]]] = []
        scanned = 0
        for ticket_id, score, ticket in self._walk(cursor, first=limit + 1):
            scanned += 1
            if ticket is not None and query.matches(ticket):
                found.append((score, ticket_id, ticket))
                if len(found) > limit:  # one more than the page: there is a next page
                    last_score, last_id, _ = found[limit - 1]
                    return Page([t for _, _, t in found[:limit]], encode_cursor(last_score, last_id), scanned=scanned)
            if scanned >= scan_limit:
                return Page([t for _, _, t in found], encode_cursor(score, ticket_id), complete=False,
                            scanned=scanned)
        return Page([t for _, _, t in found], None, scanned=scanned)

    def _walk(self, cursor: str | None, first: int) -> Iterator[tuple[str, float, dict[str, Any] | None]]:
        """(id, score, ticket or None if gone) newest first, from just after ``cursor``; the
        first batch is ``first`` long (a plain page needs no more), later ones longer."""
        if cursor is None:
            max_score: str | float = "+inf"
            after_id = None
        else:
            max_score, after_id = decode_cursor(cursor)
        offset, size = 0, first
        # Several tickets can share a millisecond: fetch from the cursor's score inclusive and
        # skip the ones at that score already returned (ZREVRANGEBYSCORE orders ties by id, desc).
        while True:
            batch = cast(list[tuple[bytes, float]], self.redis.zrevrangebyscore(
                self.keys.tickets, max_score, "-inf", start=offset, num=size, withscores=True))
            if not batch:
                return
            offset += len(batch)
            rows = [(as_text(member), score) for member, score in batch
                    if not (after_id is not None and score == max_score and as_text(member) >= after_id)]
            if rows:
                raws = self.redis.mget([self.keys.ticket(ticket_id) for ticket_id, _ in rows])
                for (ticket_id, score), raw in zip(rows, raws, strict=True):
                    yield ticket_id, score, json.loads(raw) if raw is not None else None
            if len(batch) < size:
                return
            size = WALK_BATCH

    def patch(self, ticket_id: str, changes: Mapping[str, Any], actor: str | None = None) -> Change:
        """Apply ``changes`` (any of status, priority, category; already validated) and publish
        ``ticket.updated`` plus ``ticket.resolved``/``ticket.escalated`` on those status
        transitions, in one transaction, with the audit log's entry naming ``actor`` (when
        given). A change that alters nothing publishes nothing and is not audited.
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
                if actor is not None:
                    audit.append(tx, self.runtime, audit.entry(
                        actor, "update", f"ticket:{current.get('ticket_number') or ticket_id}",
                        {f: {"from": current.get(f), "to": changes[f]} for f in changed}))

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
    endpoint), or of a document as canonical JSON (:func:`document_digest`)."""
    return hashlib.sha256(body).hexdigest()


def document_digest(doc: Any) -> str:
    """:func:`body_digest` of ``doc`` as canonical JSON (sorted keys, no spaces), so the
    same fields in another order or spacing are the same request: a plugin's ticket fields,
    a ``POST /api/events`` body."""
    return body_digest(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                  default=str).encode("utf-8"))
