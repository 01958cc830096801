"""Argument layouts of the Lua scripts: one dataclass per script, the ARGV order its fields.

A script and its caller must agree on what ARGV[7] means. Rather than keep two lists in
step (a comment in the script, a positional list in Python), each script's arguments are a
dataclass here, and :func:`lua_prelude` turns that dataclass into the Lua that unpacks ARGV
into a table of named fields. The prelude is prepended to the script when it is registered,
so the script reads ``A.now_ms`` or ``row.sink`` and the two sides cannot drift.

Encoding (what :meth:`ScriptArgs.argv` writes and the prelude reads):

* a scalar field is one ARGV value; ``int`` and ``float`` fields arrive as Lua numbers,
  ``str`` fields as strings (``None`` is sent as ``""``);
* a ``tuple[Row, ...]`` field, Row a dataclass of scalars, is a count followed by each row's
  fields in order; in Lua it is a list of tables;
* a ``tuple[str, ...]`` field is a count followed by the strings; in Lua a list of strings.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

_NUMBER_TYPES = ("int", "float")


@dataclasses.dataclass(frozen=True)
class Row:
    """Base for one repeated group of a script's arguments (a delivery, an attempt...)."""


@dataclasses.dataclass(frozen=True)
class ScriptArgs:
    """Base for a script's argument layout. Subclasses set :attr:`SCRIPT` (the file name
    under ``storage/lua/`` without ``.lua``)."""

    SCRIPT: ClassVar[str] = ""

    def argv(self) -> list[Any]:
        """The ARGV values, in the layout's order."""
        values: list[Any] = []
        # Every receive builds one of these: the per-class plan reads each run of scalar
        # fields with one attrgetter call (walking dataclasses.fields() per value cost ~100
        # Python calls per publish, a tenth of the whole request's).
        plan = _PLANS.get(type(self)) or _PLANS.setdefault(type(self), _plan(type(self)))
        for read, row_values in plan:
            got = read(self)
            if row_values is None:  # a run of scalars
                values.extend(_blank_none(got))
                continue
            values.append(len(got))
            for item in got:
                values.extend(_blank_none(row_values(item)))
        return values


Read = Callable[[Any], tuple[Any, ...]]


def _blank_none(row: tuple[Any, ...]) -> Sequence[Any]:
    return ["" if v is None else v for v in row] if None in row else row


def _reader(names: list[str]) -> Read:
    """``obj -> tuple of obj's attributes names``, one C call (attrgetter of one name
    returns the value itself, not a tuple)."""
    get = operator.attrgetter(*names)
    return get if len(names) > 1 else (lambda obj: (get(obj),))


_PLANS: dict[type, tuple[tuple[Read, Read | None], ...]] = {}
"""Each layout's :func:`_plan`, built on its first use."""


def _one(item: Any) -> tuple[Any, ...]:
    return (item,)


def _plan(cls: type) -> tuple[tuple[Read, Read | None], ...]:
    """A layout's fields as steps: a run of scalars (read together, row reader None), or
    one repeated field (read as a tuple; each item written as what its row reader returns:
    a string as itself, a row as its fields)."""
    plan: list[tuple[Read, Read | None]] = []
    scalars: list[str] = []
    for field in _describe(cls):
        if field.kind in ("number", "string"):
            scalars.append(field.name)
            continue
        if scalars:
            plan.append((_reader(scalars), None))
            scalars = []
        rows = _reader([sub.name for sub in field.row]) if field.kind == "rows" else _one
        plan.append((operator.attrgetter(field.name), rows))
    if scalars:
        plan.append((_reader(scalars), None))
    return tuple(plan)


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    kind: str  # "number" | "string" | "rows" | "strings"
    row: tuple[_Field, ...] = ()


def _describe(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    described = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        origin = typing.get_origin(hint)
        if origin is tuple:
            item = typing.get_args(hint)[0]
            if isinstance(item, type) and issubclass(item, Row):
                described.append(_Field(field.name, "rows", _describe(item)))
            else:
                described.append(_Field(field.name, "strings"))
        else:
            names = {getattr(arg, "__name__", str(arg)) for arg in (typing.get_args(hint) or (hint,))}
            kind = "number" if names & set(_NUMBER_TYPES) else "string"
            described.append(_Field(field.name, kind))
    return tuple(described)


def _read(field: _Field, at: str) -> str:
    return f"tonumber(ARGV[{at}])" if field.kind == "number" else f"ARGV[{at}]"


def lua_prelude(layout: type[ScriptArgs]) -> str:
    """Lua that unpacks ARGV into ``local A`` by ``layout``'s field names."""
    lines = [f"-- ARGV unpacked by gateway/storage/layout.py from {layout.__name__}", "local A = {}",
             "local _at = 1"]
    for field in _describe(layout):
        if field.kind in ("number", "string"):
            lines.append(f"A.{field.name} = {_read(field, '_at')}; _at = _at + 1")
        elif field.kind == "strings":
            lines += [f"A.{field.name} = {{}}",
                      "for _ = 1, tonumber(ARGV[_at]) do",
                      f"  _at = _at + 1; A.{field.name}[#A.{field.name} + 1] = ARGV[_at]",
                      "end",
                      "_at = _at + 1"]
        else:
            members = ", ".join(f"{sub.name} = {_read(sub, f'_at + {i}')}" for i, sub in enumerate(field.row))
            lines += [f"A.{field.name} = {{}}",
                      "do",
                      "  local _n = tonumber(ARGV[_at]); _at = _at + 1",
                      "  for _ = 1, _n do",
                      f"    A.{field.name}[#A.{field.name} + 1] = {{{members}}}",
                      f"    _at = _at + {len(field.row)}",
                      "  end",
                      "end"]
    return "\n".join(lines) + "\n"


# -- the layouts -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NewDelivery(Row):
    """One delivery publish.lua creates: for one sink and one of its targets."""

    id: str
    sink: str
    target_json: str
    order_group: str = ""
    """"" = unordered; else the ordering group (a digest of target key and ordering key)
    whose queue it joins (storage/lua/ordering.lua)."""
    ordering_key: str = ""
    """The ordering key itself (a ticket id), kept on the delivery for the log."""


@dataclasses.dataclass(frozen=True)
class PublishArgs(ScriptArgs):
    """publish.lua: store an event (and its new ticket) with its deliveries."""

    SCRIPT: ClassVar[str] = "publish"
    prefix: str
    config_version: str
    """The integrations version the deliveries were routed by: the script writes nothing and
    answers "stale" when the stored one differs ("" = the caller checked it another way)."""
    body_hash: str
    """A digest of the request that carried the idempotency key, stored with the key: the
    same key with another digest is refused ("reused"), not answered with the first ticket
    ("" = no key, or nothing to compare)."""
    now_ms: int
    idempotency_key: str
    """The full Redis key of the Idempotency-Key ("" = none)."""
    idempotency_ttl_s: int
    ticket_year: str
    """"" when the event creates no ticket."""
    ticket_id: str
    ticket_json: str
    event_id: str
    event_name: str
    event_json: str
    event_ttl_s: int
    ticket_ref: str
    """The id of the ticket the event is about, whose log (keys.ticket_log) gets the event
    and its deliveries ("" = none, or a test event)."""
    max_drainers: int
    drainer_lease_ms: int
    backlog_per_drainer: int
    deliveries: tuple[NewDelivery, ...]


@dataclasses.dataclass(frozen=True)
class ClaimArgs(ScriptArgs):
    """claim.lua: claim up to ``n`` ready deliveries of a sink."""

    SCRIPT: ClassVar[str] = "claim"
    prefix: str
    sink: str
    token: str
    now_ms: int
    drainer_lease_ms: int
    max_in_flight: int
    n: int
    inflight_lease_ms: int
    rate_interval_ms: int
    """0 = no rate limit."""
    fan_out: int
    """1: in-flight cap, rate limit and circuit apply per target (storage/lua/lanes.lua)."""


@dataclasses.dataclass(frozen=True)
class ReleaseArgs(ScriptArgs):
    """release.lua: a drainer asks to stop."""

    SCRIPT: ClassVar[str] = "release"
    prefix: str
    sink: str
    token: str
    now_ms: int
    drainer_lease_ms: int


@dataclasses.dataclass(frozen=True)
class AttemptRecord(Row):
    """One finished attempt, as finish.lua records it."""

    id: str
    sink: str
    now_ms: int
    attempt_json: str
    status: str
    """delivered | retrying | failed"""
    attempts: int
    round_attempts: int
    next_attempt_at_ms: int | None
    last_status_code: int | None
    last_error: str
    retention_s: int
    circuit: str
    """What the attempt tells the circuit breaker: "success" (delivered: closes it),
    "failure" (the destination failed: counts towards opening it) or "none" (a refusal of
    ours, such as ssrf_refused, that says nothing about the destination)."""
    lane: str
    """The target key when the sink is fan-out (per-target state), else ""."""
    max_in_flight: int
    """The cap of the attempt's lane: a fan-out target refills its freed slots from its
    parked deliveries."""
    failure_threshold: int
    cooldown_ms: int
    max_cooldown_ms: int
    pause_reason: str
    """"" = do not pause the sink."""
    hour: str
    """The hourly-counter bucket, YYYYMMDDHH."""
    latency_bucket: str
    """The hourly latency histogram's bucket for the attempt's duration (the bound in ms, as
    gateway.delivery.hourly_stats names it; "" = the attempt sent nothing, so it has none)."""
    stats_ttl_s: int
    failure_json: str = ""
    """A delivery that ends failed: the failure as the delivery.failed summary shows it
    (storage/lua/failures.lua counts it); "" = not counted."""


@dataclasses.dataclass(frozen=True)
class FinishArgs(ScriptArgs):
    """finish.lua: record finished attempts, in order."""

    SCRIPT: ClassVar[str] = "finish"
    prefix: str
    attempts: tuple[AttemptRecord, ...]


@dataclasses.dataclass(frozen=True)
class FailureSummariesArgs(ScriptArgs):
    """failure_summaries.lua: the sweeper claims the failure summaries that are due."""

    SCRIPT: ClassVar[str] = "failure_summaries"
    prefix: str
    now_ms: int
    window_ms: int
    limit: int
    """Most sinks looked at in one call."""


@dataclasses.dataclass(frozen=True)
class RequeueRow(Row):
    """A delivery to put back on its ready list; ``expected_attempts`` only in retry mode."""

    id: str
    expected_attempts: str


@dataclasses.dataclass(frozen=True)
class RequeueArgs(ScriptArgs):
    """requeue.lua: retries firing, replays, and wake-ups."""

    SCRIPT: ClassVar[str] = "requeue"
    prefix: str
    now_ms: int
    max_drainers: int
    drainer_lease_ms: int
    backlog_per_drainer: int
    mode: str
    """"retry" | "replay" """
    keep_order: int
    """Replay only: 1 puts an ordered delivery back at the end of its ordering group's queue
    (a batch replay, in original order); 0 sends it now, out of order (one replay)."""
    token_prefix: str
    deliveries: tuple[RequeueRow, ...]
    wake_sinks: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SweepArgs(ScriptArgs):
    """sweep.lua: the sweeper's pass over every sink."""

    SCRIPT: ClassVar[str] = "sweep"
    prefix: str
    now_ms: int
    max_drainers: int
    drainer_lease_ms: int
    backlog_per_drainer: int
    token_prefix: str
    index_cutoff_ms: int
    configured: tuple[str, ...]
    draining: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class CancelArgs(ScriptArgs):
    """cancel.lua: end deliveries that are still waiting, with a reason (a deleted sink);
    each leaves its ordering group like any ended delivery (``order_leave``)."""

    SCRIPT: ClassVar[str] = "cancel"
    prefix: str
    sink: str
    now_ms: int
    reason: str
    """The stable code, e.g. sink_deleted."""
    message: str
    retention_s: int
    claimed: int
    """1: the caller holds these deliveries' in-flight leases (it claimed them) and gives
    them back; 0: deliveries being attempted by someone are left to finish."""
    last: int
    """1 on the last batch of a deleted sink's deliveries: its ready list and state go too
    (a fan-out sink's targets' state and parked lists included)."""
    ids: tuple[str, ...]
