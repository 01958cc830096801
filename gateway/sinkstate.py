"""Each configured sink's runtime state as admins see it, and what they can do about it.

State: ``ok``, ``circuit_open`` (until a time; then one probe decides), ``half_open``
(cool-down over, the probe is due or out) or ``paused`` (with the reason, e.g. the
destination answered 410 Gone; only ``resume`` un-pauses). Counts: deliveries queued
(ready), in flight, and attempts in the last 24 h by the status they led to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.events import Event, iso_from_ms
from gateway.scripts import as_text, now_ms, scripts_for

if TYPE_CHECKING:  # pragma: no cover
    from gateway.bus import Published
    from gateway.runtime import Runtime

COUNTED = ("delivered", "retrying", "failed")


class UnknownSink(KeyError):
    """No sink of that name is configured."""


def _hours(now: datetime) -> list[str]:
    return [(now - timedelta(hours=h)).strftime("%Y%m%d%H") for h in range(24)]


def sink_states(runtime: Runtime, names: list[str] | None = None) -> list[dict[str, Any]]:
    """State and counts of the configured sinks (all, or ``names``), in config order.
    One round trip for all of them."""
    configs = [s for s in runtime.settings.sinks if names is None or s.name in names]
    keys = runtime.keys
    hours = _hours(datetime.now(UTC))
    with runtime.redis.pipeline(transaction=False) as pipe:
        for config in configs:
            pipe.hgetall(keys.sink_state(config.name))
            pipe.llen(keys.ready(config.name))
            pipe.zcard(keys.inflight(config.name))
            for hour in hours:
                pipe.hmget(keys.sink_stats(config.name, hour), *COUNTED)
        replies = pipe.execute()
    per_sink = 3 + len(hours)
    now = now_ms()
    states = []
    for index, config in enumerate(configs):
        chunk = replies[index * per_sink:(index + 1) * per_sink]
        raw = {as_text(k): as_text(v) for k, v in chunk[0].items()}
        totals = dict.fromkeys(COUNTED, 0)
        for row in chunk[3:]:
            for name, value in zip(COUNTED, row, strict=True):
                totals[name] += int(value or 0)
        states.append({
            **config.to_public_json(),
            **_state(raw, now),
            "counts": {"queued": int(chunk[1]), "in_flight": int(chunk[2]), "last_24h": totals},
        })
    return states


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


def resume(runtime: Runtime, name: str) -> dict[str, Any]:
    """Un-pause a sink and close its circuit (the admin says the destination is fixed),
    then wake a drainer for whatever waited. Returns the new state."""
    require_sink(runtime, name)
    runtime.redis.hdel(runtime.keys.sink_state(name), "paused", "paused_reason", "paused_at",
                       "circuit_open_until", "cooldown", "probe_until", "opened_at", "failure_streak")
    scripts_for(runtime).requeue("retry", wake_sinks=[name])
    return sink_states(runtime, [name])[0]


def send_test(runtime: Runtime, event_name: str, sink_name: str) -> Published:
    """Publish a sample ``event_name`` through the normal path, to ``sink_name`` only: the
    sink's own :meth:`~gateway.sinks.Sink.sample_event` when it has one, else the
    catalogue's sample. Raises UnknownSink, or gateway.events.UnknownEvent."""
    require_sink(runtime, sink_name)
    event_type = runtime.plugins.catalog.get(event_name)
    data = runtime.sinks[sink_name].sample_event(event_name) or event_type.sample
    return runtime.publisher.publish(Event.new(event_name, dict(data)), only_sink=sink_name)
