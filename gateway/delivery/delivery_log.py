"""The delivery log: what was sent where, when, what came back (read side), and replay.

Deliveries are found through the index ZSETs (all, and per sink, scored by creation time),
newest first. Delivered and failed deliveries expire after the retention period; their
index entries are pruned lazily, when a query meets them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.delivery import attempt_store, wakeups
from gateway.digits import is_ascii_digits
from gateway.events import iso_from_ms
from gateway.redact import carries_secret, redact_url, sink_secret_values
from gateway.storage.scripts import RequeueResult, as_text

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

STATUSES = ("pending", "retrying", "waiting", "delivered", "failed", "cancelled")
"""pending: ready or being attempted; retrying: until its next attempt; waiting: behind an
earlier delivery of its ticket (ordered delivery, ``waiting_for`` says which); delivered and
failed: ended (failed ones can be replayed); cancelled: ended without being attempted again
(its sink was deleted, ``cancel_reason`` says so)."""
SINK_DELETED = "sink_deleted"
"""The ``cancel_reason`` of a delivery whose sink was deleted while it waited."""
SINK_DELETED_MESSAGE = "The sink was deleted; the delivery was not attempted."
MAX_LIMIT = 1000
_CHUNK = 200
_REPLAY_BATCH = 500


def _sink_secrets(runtime: Runtime, sink: str | None) -> list[str]:
    try:
        return sink_secret_values(runtime.sink_config(sink or ""))
    except KeyError:  # a sink no longer configured: its URLs are masked after the first segment
        return []


def delivery_view(fields: dict[str, str], secrets: list[str] | None = None) -> dict[str, Any]:
    """A stored delivery hash as the API and CLI show it (no secrets: URLs redacted; a URL
    holding one of ``secrets``, the sink's secret values, shows no path at all)."""
    target = json.loads(fields.get("target") or "{}")
    url = target.get("url")
    return {
        "id": fields.get("id"),
        "event_id": fields.get("event_id"),
        "event": fields.get("event"),
        "sink": fields.get("sink"),
        "target": {"key": target.get("key"),
                   "url": redact_url(url, secret=carries_secret(url, secrets or ())) if url else None},
        "status": fields.get("status"),
        "attempts": int(fields.get("attempts") or 0),
        "created_at": iso_from_ms(fields.get("created_at")),
        "updated_at": iso_from_ms(fields.get("updated_at")),
        "next_attempt_at": iso_from_ms(fields.get("next_attempt_at")) if fields.get("status") == "retrying" else None,
        "last_status_code": int(fields["last_status_code"]) if fields.get("last_status_code") else None,
        "last_error": fields.get("last_error"),
        "replays": int(fields.get("replays") or 0),
        "cancel_reason": fields.get("cancel_reason") if fields.get("status") == "cancelled" else None,
        # Ordered delivery: the ticket (ordering key) it is ordered by, the delivery it waits
        # for while "waiting", and once released, the one it waited for and how that ended.
        "ordering_key": fields.get("order_key") or None,
        "waiting_for": fields.get("waiting_for") if fields.get("status") == "waiting" else None,
        "waited_for": ({"id": fields["waited_for"], "status": fields.get("waited_for_status"),
                        "released_at": iso_from_ms(fields.get("released_at"))}
                       if fields.get("waited_for") else None),
    }


def _hashes(runtime: Runtime, ids: list[str]) -> list[dict[str, str]]:
    with runtime.redis.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hgetall(runtime.keys.delivery(delivery_id))
        replies = pipe.execute()
    return [{as_text(k): as_text(v) for k, v in reply.items()} for reply in replies]


def iter_deliveries(runtime: Runtime, sink: str | None = None, since: datetime | None = None
                    ) -> Iterator[dict[str, str]]:
    """Stored delivery hashes, newest first, pruning index entries whose delivery expired."""
    keys = runtime.keys
    index = keys.sink_deliveries(sink) if sink else keys.deliveries
    low = int(since.timestamp() * 1000) if since else "-inf"
    high: Any = "+inf"
    offset = 0
    while True:
        ids = [as_text(i) for i in runtime.redis.zrevrangebyscore(index, high, low, start=offset, num=_CHUNK)]
        if not ids:
            return
        gone: list[str] = []
        for delivery_id, fields in zip(ids, _hashes(runtime, ids), strict=True):
            if fields:
                yield fields
            else:
                gone.append(delivery_id)
        offset += len(ids) - len(gone)
        if gone:
            # The hash says no more which sink it was for: drop the ids from every index.
            indexes = {index, keys.deliveries, *(keys.sink_deliveries(s.name) for s in runtime.sink_configs())}
            with runtime.redis.pipeline(transaction=False) as pipe:
                for name in indexes:
                    pipe.zrem(name, *gone)
                pipe.execute()
        if len(ids) < _CHUNK:
            return


def count_indexed(runtime: Runtime, sink: str | None = None, since: datetime | None = None) -> int:
    """How many index entries a scan from ``since`` will look at (an upper bound)."""
    index = runtime.keys.sink_deliveries(sink) if sink else runtime.keys.deliveries
    return int(runtime.redis.zcount(index, int(since.timestamp() * 1000) if since else "-inf", "+inf"))


def list_deliveries(runtime: Runtime, sink: str | None = None, status: str | None = None,
                    event: str | None = None, since: datetime | None = None, limit: int = 50,
                    keep: Callable[[dict[str, str]], bool] | None = None) -> list[dict[str, Any]]:
    """Deliveries newest first, filtered by sink, status, event name and creation time (and
    by ``keep(stored hash)``, when given)."""
    found: list[dict[str, Any]] = []
    secrets: dict[str, list[str]] = {}
    for fields in iter_deliveries(runtime, sink, since):
        if status and fields.get("status") != status:
            continue
        if event and fields.get("event") != event:
            continue
        if keep is not None and not keep(fields):
            continue
        name = fields.get("sink", "")
        if name not in secrets:
            secrets[name] = _sink_secrets(runtime, name)
        found.append(delivery_view(fields, secrets[name]))
        if len(found) >= limit:
            break
    return found


WAITING = ("pending", "retrying", "waiting")
"""The statuses of deliveries that have not ended (what deleting their sink cancels)."""


def count_by_status(runtime: Runtime, sink: str, statuses: tuple[str, ...] = WAITING,
                    scan_limit: int | None = None) -> tuple[dict[str, int], bool]:
    """How many of ``sink``'s deliveries are in each of ``statuses`` now, newest first, and
    whether every one was looked at (False: the scan stopped after ``scan_limit``, so the
    counts are a lower bound). A scan of the sink's delivery log: for one admin's page."""
    counts = dict.fromkeys(statuses, 0)
    for scanned, fields in enumerate(iter_deliveries(runtime, sink), start=1):
        status = fields.get("status", "")
        if status in counts:
            counts[status] += 1
        if scan_limit is not None and scanned >= scan_limit:
            return counts, False
    return counts, True


def in_flight_ids(runtime: Runtime, sink: str) -> set[str]:
    """The deliveries of ``sink`` being attempted right now."""
    return {as_text(i) for i in runtime.redis.zrange(runtime.keys.inflight(sink), 0, -1)}


def get_delivery(runtime: Runtime, delivery_id: str) -> dict[str, Any] | None:
    """One delivery with every attempt (oldest first) and the payload it sends; None when
    unknown or expired."""
    keys = runtime.keys
    with runtime.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.delivery(delivery_id))
        pipe.lrange(keys.attempts(delivery_id), 0, -1)
        fields_raw, attempts_raw = pipe.execute()
    if not fields_raw:
        return None
    fields = {as_text(k): as_text(v) for k, v in fields_raw.items()}
    view = delivery_view(fields, _sink_secrets(runtime, fields.get("sink")))
    event_json = runtime.redis.get(keys.event(fields.get("event_id", "")))
    view["attempt_log"] = [attempt_store.unpack(a, fields, event_json) for a in attempts_raw]
    if event_json:
        doc = json.loads(event_json)
        view["payload"] = {"event": doc["event"], "timestamp": doc["timestamp"], "data": doc["data"]}
    else:
        view["payload"] = None
    return view


def _event_summary(event_json: bytes | str | None) -> dict[str, Any] | None:
    """An event's id, name and time, and the ticket it is about (id, number, subject)."""
    if not event_json:
        return None
    doc = json.loads(event_json)
    data = doc.get("data") or {}
    ticket = data.get("ticket") if isinstance(data.get("ticket"), dict) else None
    return {"id": doc.get("id"), "event": doc.get("event"), "timestamp": doc.get("timestamp"),
            "ticket": {"id": ticket.get("id"), "ticket_number": ticket.get("ticket_number"),
                       "subject": ticket.get("subject")} if ticket else None}


def with_tickets(runtime: Runtime, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (delivery views) each with ``ticket``: the id, number and subject of the
    ticket its event is about (None when it names none, or the event expired). One MGET."""
    event_ids = list(dict.fromkeys(row["event_id"] for row in rows if row.get("event_id")))
    summaries: dict[str, dict[str, Any] | None] = {}
    if event_ids:
        raws = runtime.redis.mget([runtime.keys.event(event_id) for event_id in event_ids])
        summaries = {event_id: _event_summary(raw) for event_id, raw in zip(event_ids, raws, strict=True)}
    return [{**row, "ticket": (summaries.get(row.get("event_id") or "") or {}).get("ticket")} for row in rows]


def _views(runtime: Runtime, ids: list[str]) -> list[dict[str, Any]]:
    """Delivery views of ``ids`` (in that order; expired ones left out)."""
    secrets: dict[str, list[str]] = {}
    views = []
    for fields in _hashes(runtime, ids):
        if fields:
            name = fields.get("sink", "")
            if name not in secrets:
                secrets[name] = _sink_secrets(runtime, name)
            views.append(delivery_view(fields, secrets[name]))
    return views


MAX_TICKET_EVENTS = 200
"""The ticket page shows at most this many of a ticket's latest events."""


def ticket_history(runtime: Runtime, ticket_id: str, limit: int = MAX_TICKET_EVENTS) -> list[dict[str, Any]]:
    """A ticket's events, oldest first (its latest ``limit``), each with its deliveries
    (delivery views, one per sink target), from the ticket's log (publish.lua writes it).
    An event past its retention is left out; a delivery past it too."""
    entries = [as_text(e).split(" ") for e in runtime.redis.lrange(runtime.keys.ticket_log(ticket_id), -limit, -1)]
    if not entries:
        return []
    raws = runtime.redis.mget([runtime.keys.event(entry[0]) for entry in entries])
    deliveries = {view["id"]: view for view in _views(runtime, [i for entry in entries for i in entry[1:]])}
    history = []
    for entry, raw in zip(entries, raws, strict=True):
        summary = _event_summary(raw)
        if summary is None:
            continue
        history.append({**summary, "deliveries": [deliveries[i] for i in entry[1:] if i in deliveries]})
    return history


def ticket_id_of(runtime: Runtime, ticket_number: str) -> str | None:
    """The id of the ticket numbered ``ticket_number`` (None when there is none)."""
    found = runtime.redis.hget(runtime.keys.ticket_numbers, ticket_number.strip().upper())
    return as_text(found) if found is not None else None


def find_deliveries(runtime: Runtime, text: str, limit: int = MAX_LIMIT) -> list[dict[str, Any]]:
    """The deliveries ``text`` names, newest first: a delivery id (that one), an event id
    (that event's, one per sink target) or a ticket number (every event's of that ticket).
    Exact lookups, no scan of the log."""
    wanted = text.strip()
    if not wanted:
        return []
    redis = runtime.redis
    keys = runtime.keys
    if wanted.startswith("dlv_"):
        return _views(runtime, [wanted])
    if wanted.startswith("evt_"):
        # Its deliveries were indexed with the event's own publish time.
        score = redis.zscore(keys.events, wanted)
        if score is None:
            return []
        ids = [as_text(i) for i in redis.zrangebyscore(keys.deliveries, score, score)]
        rows = [view for view in _views(runtime, ids) if view["event_id"] == wanted]
    else:
        ticket_id = ticket_id_of(runtime, wanted)
        if ticket_id is None:
            return []
        ids = [i for entry in redis.lrange(keys.ticket_log(ticket_id), 0, -1) for i in as_text(entry).split(" ")[1:]]
        rows = _views(runtime, ids)
    rows.sort(key=lambda view: view["created_at"] or "", reverse=True)
    return rows[:limit]


def replay(runtime: Runtime, delivery_ids: list[str], keep_order: bool = False) -> RequeueResult:
    """Send deliveries again with the SAME ids (consumers deduplicate on them): back to
    pending, a fresh round of the retry schedule, on the ready list, drainers woken.
    An ordered delivery is sent now, out of order (the admin asked for it), unless
    ``keep_order``: then it joins the end of its ticket's queue, after whatever of that
    ticket is still to be delivered (give the ids oldest first).
    Per id the result says queued / missing / busy (already queued or in flight)."""
    return wakeups.requeue(runtime, "replay", [(i, "") for i in delivery_ids], keep_order=keep_order)


def replay_matching(runtime: Runtime, sink: str | None, status: str | None = "failed",
                    since: datetime | None = None, on_scanned: Callable[[int], None] | None = None
                    ) -> tuple[int, int]:
    """Replay every delivery of ``sink`` with ``status`` created since ``since``, oldest
    first, each ticket's in their original order (ordered deliveries keep their order: see
    :func:`replay`); returns (matched, queued). ``on_scanned(1)`` is called per delivery
    looked at (progress)."""
    found: list[tuple[int, int, str]] = []
    for fields in iter_deliveries(runtime, sink, since):
        if on_scanned is not None:
            on_scanned(1)
        if status and fields.get("status") != status:
            continue
        # The log is read newest first; replays go oldest first. Within one millisecond,
        # order_seq (one per publish) keeps a ticket's events in the order they happened.
        found.append((int(fields.get("created_at") or 0), int(fields.get("order_seq") or 0), fields["id"]))
    found.sort()
    ids = [delivery_id for _, _, delivery_id in found]
    queued = 0
    for start in range(0, len(ids), _REPLAY_BATCH):
        queued += replay(runtime, ids[start:start + _REPLAY_BATCH], keep_order=True).queued
    return len(ids), queued


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``since`` as a time: ISO-8601 (``2026-01-15T10:30:00Z``; UTC when no offset) or an
    age such as ``30m``, ``2h``, ``7d``. Raises ValueError with a readable message."""
    value = text.strip()
    if len(value) >= 2 and value[-1] in _UNITS and is_ascii_digits(value[:-1]):
        return (now or datetime.now(UTC)) - timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("Use an ISO-8601 time (2026-01-15T10:30:00Z) or an age like 30m, 2h, 7d.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
