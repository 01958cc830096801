"""Recent payloads per sink and event, for Zapier's "perform list" (sample data while
building a Zap).

The last three flat payloads of each event a zapier sink offers live in one Redis list per
sink (``zapier:<sink>:samples:<event>``), newest first: one sink's keys never see another
sink's tickets.
"""

from __future__ import annotations

import json
from typing import Any

from gateway import Event, SinkContext
from gateway_zapier.payload import flatten

KEEP = 3


def _key(context: SinkContext, sink: str, event_name: str) -> str:
    return context.key("zapier", sink, "samples", event_name)


def record(context: SinkContext, sinks: list[str], event: Event) -> None:
    """Keep ``event``'s flat payload as one of the last three of its name, for each of
    ``sinks`` (one round trip)."""
    body = json.dumps(flatten(event, context.public_url), separators=(",", ":"), ensure_ascii=False)
    with context.redis.pipeline(transaction=True) as pipe:
        for sink in sinks:
            pipe.lpush(_key(context, sink, event.name), body)
            pipe.ltrim(_key(context, sink, event.name), 0, KEEP - 1)
        pipe.execute()


def recent(context: SinkContext, sinks: list[str], event_name: str) -> list[dict[str, Any]]:
    """Up to three recent flat payloads of ``event_name`` seen by ``sinks``, newest first."""
    with context.redis.pipeline(transaction=False) as pipe:
        for sink in sinks:
            pipe.lrange(_key(context, sink, event_name), 0, KEEP - 1)
        lists = pipe.execute()
    found: dict[str, dict[str, Any]] = {}
    for raw in (raw for rows in lists for raw in rows):
        payload = json.loads(raw)
        found.setdefault(payload["id"], payload)  # one event offered by two sinks: once
    return sorted(found.values(), key=lambda p: p["timestamp"], reverse=True)[:KEEP]
