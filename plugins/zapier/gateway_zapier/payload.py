"""The flat, Zapier-friendly payload: one level of fields, no nesting, and an ``id``.

:func:`flatten` is the one function both live deliveries and sample data (recent payloads
and the catalogue's sample, :func:`sample_payload`) are made with, so their keys cannot
drift apart.

Zapier maps fields by name in its editor, and nested objects show up as awkward
``ticket__subject`` paths, so the event's data is flattened: the ticket's fields keep their
own names (``ticket_number``, ``subject``, ``customer_email``, its ``id`` becomes
``ticket_id``); other objects' fields are prefixed with the object's name
(``ai_response_content``, ``feedback_rating``) unless they already say what they are
(``ticket_number``, ``customer_email``); top-level values such as ``reason`` stay as they
are. ``id`` (what Zapier deduplicates trigger items on: the event's id, the same on every
retry and replay), ``event``, ``event_id`` and ``timestamp`` describe the event itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from gateway import Event

RESERVED = ("id", "event", "event_id", "timestamp")
_SELF_DESCRIBING = ("ticket_", "customer_")
SAMPLE_TIMESTAMP = "2026-01-15T10:30:00.000Z"
"""The time of every placeholder sample (a fixed one: a sample must not change between calls)."""


def _walk(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, sub in value.items():
        name = f"{prefix}{key}"
        if isinstance(sub, Mapping):
            yield from _walk(sub, f"{name}_")
        else:
            yield name, sub


def _field_name(parent: str, key: str) -> str:
    if parent == "ticket":
        return "ticket_id" if key == "id" else key
    if key.startswith(_SELF_DESCRIBING):
        return key
    return f"{parent}_{key}"


def flatten(event: Event, public_url: str | None = None) -> dict[str, Any]:
    """The event as one flat JSON object (see the module docstring for the naming rules).
    With ``public_url`` a ``ticket_url`` links to the ticket in the support app."""
    flat: dict[str, Any] = {"id": event.id, "event": event.name, "event_id": event.id, "timestamp": event.timestamp}

    def put(name: str, fallback: str, value: Any) -> None:
        # First come keeps the short name; a clash falls back to the fully prefixed one.
        if name in flat:
            name = fallback if fallback not in flat else f"data_{fallback}"
        flat[name] = value

    for key, value in (event.data or {}).items():
        if isinstance(value, Mapping):
            for sub, sub_value in _walk(value):
                put(_field_name(key, sub), f"{key}_{sub}", sub_value)
        else:
            put(key, f"data_{key}", value)
    if public_url and flat.get("ticket_id"):
        flat.setdefault("ticket_url", f"{public_url.rstrip('/')}/tickets/{quote(str(flat['ticket_id']), safe='')}")
    return flat


def sample_payload(sink: str, event_name: str, data: Mapping[str, Any], public_url: str | None) -> dict[str, Any]:
    """A placeholder item for ``event_name`` before any has happened: ``data`` (the event
    type's sample, in its live shape) through :func:`flatten`, with an id and time that are
    the same on every call (Zapier would otherwise see a new item each time)."""
    digest = hashlib.sha256(f"{sink}\x00{event_name}".encode()).hexdigest()[:32]
    return flatten(Event(id=f"evt_{digest}", name=event_name, timestamp=SAMPLE_TIMESTAMP, data=data), public_url)
