"""How an attempt record is kept in Redis: a compact form that reads back exactly as written.

:class:`~gateway.delivery.attempt.AttemptRunner` builds each attempt's record (a dict: what
the log, the metrics, the ``delivery_attempted`` hook and the delivery log's API, console and
CLI show). Kept as that dict's JSON, a delivered ticket's one attempt was the largest thing
it left in Redis (~1,850 bytes of ~5,100): the request body again, the delivery's ids again,
every key name spelled out. :func:`pack` keeps only what is not stored elsewhere, and
:func:`unpack` puts the rest back from what the reader has at hand anyway (the delivery hash,
and the event :func:`~gateway.delivery.delivery_log.get_delivery` reads for its payload):

* the delivery's id, event id, event name, sink and target key come from the delivery hash
  (publish.lua writes them once and nothing changes them; the hash and its attempts list
  expire together);
* a request body that is the event's own envelope exactly as stored (the generic webhook
  without a template: :func:`event_envelope_text`), or its first 2 KB as the delivery log
  keeps of a longer one, is kept as its length in characters and rebuilt from the
  event. The event can expire before the attempt does (it expires ``retention_days`` after
  it was published, the attempt ``retention_days`` after its delivery ended): the body is
  then shown as ``null`` (``body_bytes`` still says how long it was), never a guess. A body
  a template, Slack or Zapier rendered differs from the event, and is kept;
* the request's headers are a flat list of names and values in which the usual names and
  values are numbers (:data:`HEADER_NAMES`, :data:`HEADER_VALUES`; a header's value that is
  the delivery id or the event name is taken from the hash too);
* the rest is a JSON array in a fixed field order instead of an object (no key names).

Records written before this (a JSON object, every field named) read back as they are. A
record with a field this module does not know is kept whole, the old way, so a new field
can never be dropped silently.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Mapping
from typing import Any

VERSION = 2
"""The first element of a packed record (an old record is a JSON object, not an array)."""

FIELDS = ("attempt", "at", "duration_ms", "status_code", "outcome", "status", "error", "response_excerpt",
          "request", "next_attempt_at", "event_timestamp")
"""The record's own fields, in their packed order (after VERSION). ``waited_for``, which
only an ordered delivery's first attempt after a release has, comes last when present."""
OPTIONAL = "waited_for"
FROM_DELIVERY = ("delivery_id", "event_id", "event", "sink", "target")
"""Fields put back from the delivery hash (the record's first five, in this order)."""
REQUEST_FIELDS = ("method", "url", "headers", "body", "body_bytes")

HEADER_NAMES = ("Content-Type", "User-Agent", "X-Webhook-Event", "X-Webhook-Delivery", "X-Webhook-Signature",
                "webhook-id", "webhook-timestamp", "webhook-signature")
"""Header names kept as their index here. Records in Redis refer to these by position:
only ever append (a change or a removal would misread what is stored)."""
HEADER_VALUES = ("application/json", "[hidden]", "AI-Support-Autoresponder/1.0", "application/json; charset=utf-8")
"""Header values kept as 2 + their index here (0 is the delivery id, 1 the event name):
literal, not the constants they come from today (a new default User-Agent must not change
what an old record says was sent), and as for the names, only ever append."""


def _own_values(fields: Mapping[str, str]) -> tuple[str, ...]:
    """The header values a record takes from its delivery hash, by their code."""
    return fields.get("id", ""), fields.get("event", "")


_ORDER = (*FROM_DELIVERY, *FIELDS)
_NAME_CODES = {name: code for code, name in enumerate(HEADER_NAMES)}
_VALUE_CODES = {value: code for code, value in enumerate(HEADER_VALUES, start=len(_own_values({})))}
_LAYOUTS = frozenset((_ORDER, (*_ORDER, OPTIONAL)))
_REQUEST_AT = 1 + FIELDS.index("request")
_ID_MEMBER = '{"id":"'
# The record's values in the packed order, each with one C call per record rather than a
# Python step per field (a record is packed at every attempt).
_FIELD_VALUES = operator.itemgetter(*FIELDS)
_FROM_DELIVERY_VALUES = operator.itemgetter(*FROM_DELIVERY)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""json.dumps' compact form; one encoder made once (json.dumps with options makes one per call)."""


def event_envelope_text(event_json: str | bytes | None) -> str | None:
    """The envelope of a stored event (:meth:`gateway.events.Event.to_json`: ``{"id":...,
    "event":..., "timestamp":..., "data":...}``) as the generic webhook sends it
    (:meth:`~gateway.events.Event.envelope_bytes`: the same compact JSON without the id):
    the stored text with its leading id member cut out, no JSON parsed. None when there is
    no event or it is not in that form."""
    if event_json is None:
        return None
    text = event_json.decode("utf-8") if isinstance(event_json, bytes) else event_json
    if not text.startswith(_ID_MEMBER):
        return None
    end = text.find('",', len(_ID_MEMBER))
    return "{" + text[end + 2:] if end > 0 else None


def pack(record: Mapping[str, Any], fields: Mapping[str, str], event_json: str | bytes | None) -> str:
    """``record`` as kept in Redis. ``fields`` is the delivery hash the attempt was made
    from and ``event_json`` the event as stored (what :func:`unpack` will be given)."""
    headers = _packable(record, fields)
    if headers is None:
        return _encode(record)
    packed: list[Any] = [VERSION, *_FIELD_VALUES(record)]
    request = record["request"]
    if request is not None:
        body = request["body"]
        envelope = event_envelope_text(event_json) if body else None
        if envelope is not None and envelope.startswith(body):
            body = len(body)  # a number: the first this many characters of the envelope
        packed[_REQUEST_AT] = [request["method"], request["url"], headers, body, request["body_bytes"]]
    if OPTIONAL in record:
        packed.append(record[OPTIONAL])
    return _encode(packed)


def _pack_headers(headers: Mapping[str, str], fields: Mapping[str, str]) -> list[str | int] | None:
    """The flat list of codes and strings; None when a value is not a string (a number
    would read back as a code)."""
    values = headers.values()
    if not set(map(type, values)) <= {str}:
        return None
    # A value that is the delivery's own id or event name takes that code before the table's.
    codes = _VALUE_CODES | {value: code for code, value in enumerate(_own_values(fields))}
    # Names and values coded by maps over dict.get (a dozen headers per attempt: no Python
    # step per header), interleaved name, value, name, value...
    flat: list[str | int] = [0] * (2 * len(headers))
    flat[0::2] = map(_NAME_CODES.get, headers, headers)
    flat[1::2] = map(codes.get, values, values)
    return flat


def _unpack_headers(flat: list[str | int], fields: Mapping[str, str]) -> dict[str, str]:
    values = (*_own_values(fields), *HEADER_VALUES)
    headers: dict[str, str] = {}
    for index in range(0, len(flat), 2):
        name, value = flat[index], flat[index + 1]
        headers[HEADER_NAMES[name] if isinstance(name, int) else name] = (
            values[value] if isinstance(value, int) else value)
    return headers


def _packable(record: Mapping[str, Any], fields: Mapping[str, str]) -> list[str | int] | None:
    """Whether :func:`unpack` gives ``record`` back exactly (every field known, the
    delivery's fields as the hash holds them, the request of the known shape): its packed
    headers if so ([] without a request), None if not."""
    if tuple(record) not in _LAYOUTS:  # a field unknown, missing or out of order
        return None
    if _FROM_DELIVERY_VALUES(record) != _from_delivery(fields):
        return None
    request = record["request"]
    if request is None:
        return []
    # dict first: the engine's are dicts, known without the Mapping ABC's Python-level check.
    if not isinstance(request, (dict, Mapping)) or tuple(request) != REQUEST_FIELDS \
            or type(request["body"]) is not str or not isinstance(request["headers"], (dict, Mapping)):
        return None
    return _pack_headers(request["headers"], fields)


def _from_delivery(fields: Mapping[str, str]) -> tuple[Any, ...]:
    return (fields.get("id"), fields.get("event_id"), fields.get("event"), fields.get("sink"),
            _target_key(fields.get("target") or "{}"))


@functools.lru_cache(maxsize=1024)
def _target_key(target_json: str) -> Any:
    """The key of a delivery's stored target JSON (a sink has one target, a fan-out sink a
    few: parsed once each, not once per attempt)."""
    return json.loads(target_json).get("key")


def unpack(raw: str | bytes, fields: Mapping[str, str], event_json: str | bytes | None) -> dict[str, Any]:
    """The record :func:`pack` was given (or an old record as it was written), from its
    delivery's hash ``fields`` and its event as stored now (None when expired)."""
    doc = json.loads(raw)
    if not isinstance(doc, list):
        return doc
    record = dict(zip(FROM_DELIVERY, _from_delivery(fields), strict=True))
    record.update(zip(FIELDS, doc[1:1 + len(FIELDS)], strict=True))
    request = record["request"]
    if request is not None:
        view = dict(zip(REQUEST_FIELDS, request, strict=True))
        view["headers"] = _unpack_headers(view["headers"], fields)
        length = view["body"]
        if type(length) is int:  # the start of the event's envelope (a kept body is a string)
            envelope = event_envelope_text(event_json)
            # The event is gone: no body to show rather than one that may not be it.
            view["body"] = envelope[:length] if envelope is not None else None
        record["request"] = view
    if len(doc) > 1 + len(FIELDS):
        record[OPTIONAL] = doc[1 + len(FIELDS)]
    return record
