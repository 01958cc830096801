"""The event envelope and the catalogue of event types.

The guide's ten events are registered by the core's builtin plugin
(:mod:`gateway.builtin_events`); plugins add more through ``register_event_types``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import marshmallow


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso_z(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix and millisecond precision, as in the guide."""
    if moment.tzinfo is not timezone.utc:
        moment = moment.astimezone(timezone.utc)
    # %-formatting of the fields: a third of strftime's cost, and this runs for every
    # ticket, event and delivery attempt.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (moment.year, moment.month, moment.day, moment.hour,
                                                     moment.minute, moment.second, moment.microsecond // 1000)


def iso_from_ms(ms: str | None) -> str | None:
    """:func:`iso_z` of epoch milliseconds as a Redis hash keeps them; None for a field
    that is not set (None or "")."""
    return iso_z(datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)) if ms else None


def new_id(prefix: str) -> str:
    """``prefix`` + 32 random hex digits (128 bits, as a uuid4 has 122): event and delivery ids."""
    return prefix + os.urandom(16).hex()


@dataclasses.dataclass(frozen=True)
class Event:
    """One published event. ``envelope()`` is the guide's outgoing payload format."""

    id: str
    name: str
    timestamp: str
    data: Mapping[str, Any]

    @classmethod
    def new(cls, name: str, data: Mapping[str, Any], at: datetime | None = None,
            timestamp: str | None = None) -> Event:
        """A fresh event with a new id, stamped now (or ``at``, or the ready-made ISO
        ``timestamp``: formatting a time costs more than the rest of this)."""
        return cls(id=new_id("evt_"), name=name, timestamp=timestamp or iso_z(at or utc_now()), data=data)

    def envelope(self) -> dict[str, Any]:
        """``{"event", "timestamp", "data"}`` exactly as the guide's payload format."""
        return {"event": self.name, "timestamp": self.timestamp, "data": self.data}

    def envelope_bytes(self) -> bytes:
        """The envelope as compact JSON bytes (what gets signed and sent)."""
        return json.dumps(self.envelope(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def to_json(self) -> str:
        """Storage form (includes the id)."""
        return json.dumps({"id": self.id, "event": self.name, "timestamp": self.timestamp, "data": self.data},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """The inverse of :meth:`to_json`."""
        doc = json.loads(raw)
        return cls(id=doc["id"], name=doc["event"], timestamp=doc["timestamp"], data=doc["data"])


@dataclasses.dataclass(frozen=True)
class EventType:
    """A kind of event: its name, what it means, the schema of its ``data`` and a
    realistic sample (used by ``send-test`` and Zapier's sample endpoint)."""

    name: str
    description: str
    schema: type[marshmallow.Schema]
    sample: Mapping[str, Any]
    plugin: str = ""


class UnknownEvent(KeyError):
    """An event name that is not in the catalogue."""


class Catalog:
    """Event types by name. Built once at start-up from every plugin's registrations."""

    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}
        self._schemas: dict[str, marshmallow.Schema] = {}

    def add(self, event_type: EventType) -> None:
        """Register a type; a second type with the same name is an error."""
        if event_type.name in self._types:
            raise ValueError(f"event type {event_type.name!r} is registered twice")
        self._types[event_type.name] = event_type
        self._schemas[event_type.name] = event_type.schema()

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._types.values(), key=lambda t: t.name))

    def names(self) -> list[str]:
        """All event names, sorted."""
        return sorted(self._types)

    def get(self, name: str) -> EventType:
        """The type called ``name``; :class:`UnknownEvent` when there is none."""
        try:
            return self._types[name]
        except KeyError:
            raise UnknownEvent(name) from None

    def validate(self, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Load ``data`` with the event's schema; raises ValidationError or UnknownEvent."""
        if name not in self._schemas:
            raise UnknownEvent(name)
        return self._schemas[name].load(data)
