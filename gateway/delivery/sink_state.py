"""Each configured sink's runtime state as admins see it, and what they can do about it.

State: ``ok``, ``circuit_open`` (until a time; then one probe decides), ``half_open``
(cool-down over, the probe is due or out) or ``paused`` (with the reason, e.g. the
destination answered 410 Gone, or an admin paused it; only ``resume`` un-pauses). A fan-out sink's circuits are
its targets': its ``targets`` say how many are open or half-open and how many deliveries
are held back for them. Counts: deliveries queued (ready, and held back), in flight, and
attempts in the last 24 h by the status they led to.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.config import COMMON_SINK_KEYS, SinkConfig
from gateway.delivery import wakeups
from gateway.events import iso_from_ms
from gateway.redact import public_options
from gateway.storage.scripts import as_text, now_ms

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

COUNTED = ("delivered", "retrying", "failed")


def public_sink(config: SinkConfig) -> dict[str, Any]:
    """A configured sink as the API, CLI and console show it: never a secret value.
    ``source`` says where it is managed: ``config`` (the file, read-only at runtime) or
    ``api`` (the sinks API and CLI)."""
    return {"name": config.name, "type": config.type, "source": config.source, "events": list(config.events),
            "enabled": config.enabled, "signed": bool(config.secrets), "max_in_flight": config.max_in_flight,
            "timeout": config.timeout, "retry_schedule": list(config.retry_schedule),
            "rate_limit": config.rate_limit, "failure_threshold": config.failure_threshold,
            "ordering": config.ordering, "fan_out": config.fan_out,
            "filter": config.filter.spec if config.filter is not None else None,
            "options": public_options(config, COMMON_SINK_KEYS),
            "created_at": iso_from_ms(str(config.created_at_ms)) if config.created_at_ms else None,
            "updated_at": iso_from_ms(str(config.updated_at_ms)) if config.updated_at_ms else None}


class UnknownSink(KeyError):
    """No sink of that name is configured."""


def _hours(now: datetime) -> list[str]:
    return [(now - timedelta(hours=h)).strftime("%Y%m%d%H") for h in range(24)]


def sink_states(runtime: Runtime, names: list[str] | None = None) -> list[dict[str, Any]]:
    """State and counts of the configured sinks (all, or ``names``), in config order.
    One round trip for all of them."""
    configs = [s for s in runtime.sink_configs() if names is None or s.name in names]
    keys = runtime.keys
    hours = _hours(datetime.now(UTC))
    now = now_ms()
    with runtime.redis.pipeline(transaction=False) as pipe:
        for config in configs:
            pipe.hgetall(keys.sink_state(config.name))
            pipe.llen(keys.ready(config.name))
            pipe.zcard(keys.inflight(config.name))
            # Fan-out sinks: targets with an open circuit (cool-down running / over, probe due)
            # and the targets holding deliveries back.
            pipe.zcount(keys.open_lanes(config.name), now + 1, "+inf")
            pipe.zcount(keys.open_lanes(config.name), "-inf", now)
            pipe.zrange(keys.parked_lanes(config.name), 0, -1)
            for hour in hours:
                pipe.hmget(keys.sink_stats(config.name, hour), *COUNTED)
        replies = pipe.execute()
    per_sink = 6 + len(hours)
    parked = _parked(runtime, [(c.name, replies[i * per_sink + 5]) for i, c in enumerate(configs) if c.fan_out])
    states = []
    for index, config in enumerate(configs):
        chunk = replies[index * per_sink:(index + 1) * per_sink]
        raw = {as_text(k): as_text(v) for k, v in chunk[0].items()}
        totals = dict.fromkeys(COUNTED, 0)
        for row in chunk[6:]:
            for name, value in zip(COUNTED, row, strict=True):
                totals[name] += int(value or 0)
        targets = None
        queued = int(chunk[1])
        if config.fan_out:
            held = parked.get(config.name, 0)
            targets = {"circuit_open": int(chunk[3]), "half_open": int(chunk[4]), "parked": held}
            queued += held
        states.append({
            **public_sink(config),
            **_state(raw, now),
            "targets": targets,
            "counts": {"queued": queued, "in_flight": int(chunk[2]), "last_24h": totals},
        })
    return states


def _parked(runtime: Runtime, lanes: list[tuple[str, list[bytes]]]) -> dict[str, int]:
    """Deliveries held back per fan-out sink (parked for targets that may not go now)."""
    if not any(names for _, names in lanes):
        return {}
    keys = runtime.keys
    with runtime.redis.pipeline(transaction=False) as pipe:
        for sink, names in lanes:
            for lane in names:
                pipe.llen(keys.lane(sink, as_text(lane), "parked"))
        replies = iter(pipe.execute())
    return {sink: sum(int(next(replies)) for _ in names) for sink, names in lanes}


def _state(raw: dict[str, str], now: int) -> dict[str, Any]:
    open_until = int(raw["circuit_open_until"]) if raw.get("circuit_open_until") else None
    if raw.get("paused") == "1":
        state = "paused"
    elif open_until is not None:
        state = "circuit_open" if open_until > now else "half_open"
    else:
        state = "ok"
    return {
        "state": state,
        "paused_reason": raw.get("paused_reason") if state == "paused" else None,
        "paused_at": iso_from_ms(raw.get("paused_at")) if state == "paused" else None,
        "circuit_open_until": iso_from_ms(str(open_until)) if open_until is not None else None,
        "failure_streak": int(raw.get("failure_streak") or 0),
    }


def require_sink(runtime: Runtime, name: str) -> None:
    """Raise :class:`UnknownSink` unless ``name`` is configured."""
    try:
        runtime.sink_config(name)
    except KeyError:
        raise UnknownSink(name) from None


_CIRCUIT_FIELDS = ("circuit_open_until", "cooldown", "probe_until", "opened_at", "failure_streak")


@dataclasses.dataclass(frozen=True)
class Held:
    """What a resume released: the sink was paused (and why), its circuit (or, for a
    fan-out sink, a target's) was open."""

    paused: bool = False
    paused_reason: str | None = None
    circuit_open: bool = False


MAX_PAUSE_REASON = 500


def pause(runtime: Runtime, name: str, reason: str) -> tuple[dict[str, Any], bool]:
    """Pause a sink as its destination's "gone" answer would (an admin's maintenance window,
    a destination known to be broken): nothing of it is claimed until it is resumed; what
    is being attempted finishes. Returns the new state and whether it was not paused
    already (read in the same transaction: of two admins pausing at once, one pauses it)."""
    require_sink(runtime, name)
    key = runtime.keys.sink_state(name)
    with runtime.redis.pipeline(transaction=True) as pipe:
        pipe.hget(key, "paused")
        pipe.hset(key, mapping={"paused": "1", "paused_reason": reason[:MAX_PAUSE_REASON], "paused_at": now_ms()})
        was, _ = pipe.execute()
    return sink_states(runtime, [name])[0], was is None or as_text(was) != "1"


def resume(runtime: Runtime, name: str) -> dict[str, Any]:
    """Un-pause a sink and close its circuit (the admin says the destination is fixed) --
    for a fan-out sink, every target's circuit -- then wake a drainer for whatever waited.
    Returns the new state."""
    return resume_held(runtime, name)[0]


def resume_held(runtime: Runtime, name: str) -> tuple[dict[str, Any], Held]:
    """:func:`resume`, and what it released, read in the same transaction as the release
    (so of two admins resuming at once, one releases the hold and the other nothing)."""
    require_sink(runtime, name)
    keys = runtime.keys
    redis = runtime.redis
    open_lanes = [as_text(lane) for lane in redis.zrange(keys.open_lanes(name), 0, -1)]
    parked_lanes = [as_text(lane) for lane in redis.zrange(keys.parked_lanes(name), 0, -1)]
    with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.sink_state(name), "paused", "paused_reason", "circuit_open_until")
        pipe.zcard(keys.open_lanes(name))
        pipe.hdel(keys.sink_state(name), "paused", "paused_reason", "paused_at", *_CIRCUIT_FIELDS)
        for lane in open_lanes:
            pipe.hdel(keys.lane(name, lane, "state"), *_CIRCUIT_FIELDS)
        pipe.delete(keys.open_lanes(name))
        if parked_lanes:
            # Due now: the wake-up below moves one of each back, and each freed slot the rest.
            pipe.zadd(keys.parked_lanes(name), dict.fromkeys(parked_lanes, 0), xx=True)
        (paused, reason, open_until), lanes_open, *_ = pipe.execute()
    wakeups.requeue(runtime, "retry", wake_sinks=[name])
    held = Held(paused=as_text(paused) == "1" if paused is not None else False,
                paused_reason=as_text(reason) if paused is not None and reason is not None else None,
                circuit_open=open_until is not None or int(lanes_open) > 0)
    return sink_states(runtime, [name])[0], held
