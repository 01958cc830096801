"""The event envelope and the catalogue of event types.

The guide's ten events are registered by the core's builtin plugin
(:mod:`gateway.publish.builtin_events`); plugins add more through ``register_event_types``.

Event data is JSON, always: what ``POST /api/events`` accepts is loaded with the event
type's schema (so it is checked and its defaults filled in) and then dumped back to its
wire form (:func:`wire_form`), so a ``fields.DateTime`` travels as its ISO-8601 string.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow
from marshmallow import fields

from gateway.errors import flat_messages


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso_z(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix and millisecond precision, as in the guide."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # %-formatting of the fields: a third of strftime's cost, and this runs for every
    # ticket, event and delivery attempt.
    fields = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second,
              moment.microsecond // 1000)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % fields  # noqa: UP031 - see above


def iso_from_ms(ms: str | None) -> str | None:
    """:func:`iso_z` of epoch milliseconds as a Redis hash keeps them; None for a field
    that is not set (None or "")."""
    return iso_z(datetime.fromtimestamp(int(ms) / 1000, tz=UTC)) if ms else None


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


DEFAULT_ORDERING_KEY = "data.ticket.id"
"""Where an event's ordering key is, unless its type says otherwise: the ticket's id."""


@dataclasses.dataclass(frozen=True)
class EventType:
    """A kind of event: its ``name`` (``sla.breached``), a one-line ``description``, the
    marshmallow ``schema`` of its ``data`` (``POST /api/events`` is validated with it), a
    realistic ``sample`` of that data (JSON; used by ``send-test``, ``GET /api/event-types``
    and Zapier's sample endpoint) and a short ``title`` for notifications ("SLA breached";
    the description when not given). ``plugin`` is set by the core.

    At registration the sample must load with the schema and dump back to JSON; the
    catalogue keeps it in that wire form, which is what a live event of the type carries.

    ``ordering_key`` is the dotted path, in the envelope (``{"event", "timestamp",
    "data"}``), of the value that orders this event's deliveries on sinks with
    ``ordering = "per_ticket"``: deliveries with the same value go out one after the other,
    in publish order. The default is the ticket's id (``data.ticket.id``); an event about a
    ticket that carries it elsewhere names its path (``"data.conversation.ticket_id"``);
    ``None`` makes the type unordered. An event whose path leads nowhere is unordered.

    ``system`` marks an event the gateway publishes about itself (``sink.circuit_opened``,
    ``delivery.failed``...): a sink receives it only when its ``events`` name it (``"*"``
    does not include it), and never when the event is about that sink.
    """

    name: str
    description: str
    schema: type[marshmallow.Schema]
    sample: Mapping[str, Any]
    title: str = dataclasses.field(default="", kw_only=True)
    plugin: str = dataclasses.field(default="", kw_only=True)
    ordering_key: str | None = dataclasses.field(default=DEFAULT_ORDERING_KEY, kw_only=True)
    """.. versionadded:: 0.2"""
    system: bool = dataclasses.field(default=False, kw_only=True)
    """.. versionadded:: 0.3"""

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", self.description)

    def ordering_value(self, event: Event) -> str | None:
        """The event's ordering key (as text), or None when it has none."""
        return ordering_value(event, self.ordering_key)


def ordering_value(event: Event, path: str | None) -> str | None:
    """The value at dotted ``path`` in ``event``'s envelope as text; None when ``path`` is
    None or leads nowhere (a missing field, null, an object or a list)."""
    if path is None:
        return None
    node: Any = event.envelope()
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or node is None or isinstance(node, Mapping | list):
        return None
    text = str(node)
    return text or None


class UnknownEvent(KeyError):
    """An event name that is not in the catalogue."""


class InvalidSample(ValueError):
    """An event type's sample that does not load with its schema, or is not JSON."""


def wire_form(schema: marshmallow.Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as an event carries it: loaded with ``schema`` (checked, defaults filled in;
    raises ``marshmallow.ValidationError``), then dumped back to JSON-native values, so a
    ``DateTime`` becomes its ISO-8601 string. Keys that an ``unknown = INCLUDE`` schema let
    through are kept as given (a dump alone would drop them)."""
    loaded: dict[str, Any] = schema.load(data)
    dumped: dict[str, Any] = schema.dump(loaded)
    _keep_included(schema, loaded, dumped)
    return dumped


def _keep_included(schema: marshmallow.Schema, loaded: Mapping[str, Any], dumped: dict[str, Any]) -> None:
    declared = {field.attribute or name for name, field in schema.fields.items()}
    for key, value in loaded.items():
        if key not in declared and key not in dumped:
            dumped[key] = value  # an INCLUDEd key: the input's own (JSON) value
    for name, field in schema.fields.items():
        inner = field.inner if isinstance(field, fields.List) else field
        if not isinstance(inner, fields.Nested) or not isinstance(inner.schema, marshmallow.Schema):
            continue
        sub_loaded, sub_dumped = loaded.get(field.attribute or name), dumped.get(field.data_key or name)
        if isinstance(sub_loaded, Mapping) and isinstance(sub_dumped, dict):
            _keep_included(inner.schema, sub_loaded, sub_dumped)
        elif isinstance(sub_loaded, list) and isinstance(sub_dumped, list):
            for item_loaded, item_dumped in zip(sub_loaded, sub_dumped, strict=False):
                if isinstance(item_loaded, Mapping) and isinstance(item_dumped, dict):
                    _keep_included(inner.schema, item_loaded, item_dumped)


def _checked_sample(event_type: EventType, schema: marshmallow.Schema) -> dict[str, Any]:
    """The type's sample in wire form; :class:`InvalidSample` saying what is wrong."""
    try:
        json.dumps(event_type.sample)
    except (TypeError, ValueError) as exc:
        raise InvalidSample(f"its sample is not JSON ({exc}): give dates and times as ISO-8601 strings, "
                            "as a client would send them") from None
    try:
        wire = wire_form(schema, event_type.sample)
    except marshmallow.ValidationError as exc:
        problems = "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in flat_messages(exc.messages).items())
        raise InvalidSample(f"its sample does not match its schema ({problems})") from None
    try:
        json.dumps(wire)
    except (TypeError, ValueError) as exc:
        raise InvalidSample(f"its schema dumps the sample to something that is not JSON ({exc}); "
                            "use fields whose serialized form is JSON") from None
    return wire


class Catalog:
    """Event types by name. Built once at start-up from every plugin's registrations."""

    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}
        self._schemas: dict[str, marshmallow.Schema] = {}

    def add(self, event_type: EventType) -> EventType:
        """Register a type and return it as kept (its sample in wire form). A second type
        with the same name is a ValueError; a sample that does not load with the schema or
        is not JSON is an :class:`InvalidSample`."""
        if event_type.name in self._types:
            raise ValueError(f"event type {event_type.name!r} is registered twice")
        schema = event_type.schema()
        kept = dataclasses.replace(event_type, sample=_checked_sample(event_type, schema))
        self._types[event_type.name] = kept
        self._schemas[event_type.name] = schema
        return kept

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
        """``data`` checked with the event's schema, in its wire form (:func:`wire_form`):
        what an event of this type carries. Raises ValidationError or UnknownEvent."""
        if name not in self._schemas:
            raise UnknownEvent(name)
        return wire_form(self._schemas[name], data)
