"""Recent payloads per event, for Zapier's "perform list" (sample data while building a Zap).

The last three flat payloads of each event name live in one Redis list
(``zapier:samples:<event>``), newest first, shared by every zapier sink.
"""

from __future__ import annotations

import json
from typing import Any

from gateway import Event, SinkContext
from gateway_zapier.payload import flatten

KEEP = 3


def _key(context: SinkContext, event_name: str) -> str:
    return context.key("zapier", "samples", event_name)


def record(context: SinkContext, event: Event) -> None:
    """Keep ``event``'s flat payload as one of the last three of its name (one round trip)."""
    body = json.dumps(flatten(event, context.public_url), separators=(",", ":"), ensure_ascii=False)
    with context.redis.pipeline(transaction=True) as pipe:
        pipe.lpush(_key(context, event.name), body)
        pipe.ltrim(_key(context, event.name), 0, KEEP - 1)
        pipe.execute()


def recent(context: SinkContext, event_name: str) -> list[dict[str, Any]]:
    """Up to three recent flat payloads of ``event_name``, newest first."""
    return [json.loads(raw) for raw in context.redis.lrange(_key(context, event_name), 0, KEEP - 1)]
