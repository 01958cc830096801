"""Every Redis key the gateway writes, in one place (prefix configurable, default ``gw:``).

rq keeps its own keys (``rq:*``). Lua scripts build the same names from the prefix; keep
them in step with this module (``gateway/storage/lua/*.lua``).
"""

from __future__ import annotations

import dataclasses
import hashlib


@dataclasses.dataclass(frozen=True)
class Keys:
    prefix: str = "gw:"

    def ticket(self, ticket_id: str) -> str:
        """STRING: the ticket's JSON."""
        return f"{self.prefix}ticket:{ticket_id}"

    @property
    def tickets(self) -> str:
        """ZSET: ticket ids scored by creation time (ms)."""
        return f"{self.prefix}tickets"

    @property
    def ticket_numbers(self) -> str:
        """HASH: ticket number (``TKT-2026-001``) -> ticket id, written with the ticket."""
        return f"{self.prefix}ticket_numbers"

    def ticket_log(self, ticket_id: str) -> str:
        """LIST with TTL (retention, renewed by each event): one entry per event about the
        ticket, oldest first: the event id, then the ids of its deliveries, space-separated
        (publish.lua)."""
        return f"{self.prefix}ticket:{ticket_id}:log"

    def ticket_seq(self, year: int) -> str:
        """STRING counter: the per-year ticket sequence (TKT-<year>-<seq>)."""
        return f"{self.prefix}ticket_seq:{year}"

    def idempotency(self, key: str) -> str:
        """STRING with TTL: the ticket id an Idempotency-Key created (key hashed: any bytes)."""
        return f"{self.prefix}idem:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"

    def event(self, event_id: str) -> str:
        """STRING with TTL (retention): the event's storage JSON."""
        return f"{self.prefix}event:{event_id}"

    @property
    def events(self) -> str:
        """ZSET: event ids scored by publish time (ms)."""
        return f"{self.prefix}events"

    def delivery(self, delivery_id: str) -> str:
        """HASH: one delivery's state (see gateway/storage/lua/publish.lua for the fields)."""
        return f"{self.prefix}delivery:{delivery_id}"

    def attempts(self, delivery_id: str) -> str:
        """LIST: one JSON record per attempt, oldest first."""
        return f"{self.prefix}delivery:{delivery_id}:attempts"

    @property
    def deliveries(self) -> str:
        """ZSET: delivery ids scored by creation time (ms)."""
        return f"{self.prefix}deliveries"

    def sink_deliveries(self, sink: str) -> str:
        """ZSET: one sink's delivery ids scored by creation time (ms)."""
        return f"{self.prefix}sink:{sink}:deliveries"

    def ready(self, sink: str) -> str:
        """LIST: delivery ids of a sink that may be attempted now, oldest at the head."""
        return f"{self.prefix}ready:{sink}"

    def inflight(self, sink: str) -> str:
        """ZSET: delivery ids being attempted, scored by lease expiry (ms)."""
        return f"{self.prefix}inflight:{sink}"

    def drainers(self, sink: str) -> str:
        """ZSET: drainer tokens working a sink's ready list, scored by lease expiry (ms)."""
        return f"{self.prefix}drainers:{sink}"

    def sink_state(self, sink: str) -> str:
        """HASH: a sink's runtime state (paused, reason, circuit, failure streak)."""
        return f"{self.prefix}sink:{sink}:state"

    def sink_stats(self, sink: str, hour: str) -> str:
        """HASH with a ~26 h TTL: attempts of a sink in one UTC hour (``YYYYMMDDHH``) by the
        status they left the delivery in: delivered / retrying / failed; and by duration,
        ``ms:<bound>`` per latency bucket (gateway.delivery.hourly_stats) (finish.lua)."""
        return f"{self.prefix}sink:{sink}:stats:{hour}"

    def order_queue(self, sink: str, group: str) -> str:
        """LIST: the deliveries of one ordering group (sink, target, ordering key) that have
        not ended, oldest first; only the head may be attempted (storage/lua/ordering.lua)."""
        return f"{self.prefix}order:{sink}:{group}"

    @property
    def order_seq(self) -> str:
        """STRING counter: bumped by every publish with ordered deliveries; each keeps its
        value as ``order_seq``, which orders a batch replay within a millisecond."""
        return f"{self.prefix}order_seq"

    def lane(self, sink: str, lane: str, part: str) -> str:
        """One target's state of a fan-out sink (storage/lua/lanes.lua): ``part`` is
        ``state`` (HASH: failure_streak, circuit_open_until, cooldown, probe_until,
        opened_at, next_slot), ``inflight`` (ZSET: ids scored by lease expiry) or ``parked``
        (LIST: ready ids held back while the target may not be attempted, oldest first)."""
        return f"{self.prefix}sink:{sink}:lane:{lane}:{part}"

    def parked_lanes(self, sink: str) -> str:
        """ZSET: the targets of a fan-out sink with parked deliveries, scored by when to look
        at them again (ms)."""
        return f"{self.prefix}sink:{sink}:lanes"

    def open_lanes(self, sink: str) -> str:
        """ZSET: the targets of a fan-out sink whose circuit is open, scored by the end of
        the cool-down (ms); past it, half-open until a probe decides."""
        return f"{self.prefix}sink:{sink}:open_lanes"

    def sink_failures(self, sink: str) -> str:
        """HASH: a sink's failed deliveries not reported in a delivery.failed summary yet:
        count, since (ms), last (JSON) (storage/lua/failures.lua)."""
        return f"{self.prefix}sink:{sink}:failures"

    def failure_summary(self, sink: str) -> str:
        """STRING with a TTL of the summary window: a delivery.failed summary of the sink
        went out within it."""
        return f"{self.prefix}sink:{sink}:failure_summary"

    @property
    def failing_sinks(self) -> str:
        """SET: sinks with failures not reported yet (the sweeper flushes their summaries)."""
        return f"{self.prefix}failures"

    @property
    def sinks(self) -> str:
        """SET: names of sinks that have ever had a delivery (for the sweeper)."""
        return f"{self.prefix}sinks"

    @property
    def integrations_version(self) -> str:
        """STRING counter: the integrations' configuration version, bumped by every change to a
        sink (API or CLI) or to the receive secret. publish.lua compares it with the version the
        caller routed by (see gateway.runtime.Integrations)."""
        return f"{self.prefix}integrations:version"

    @property
    def integrations(self) -> str:
        """HASH: sink name -> the sink as the sinks API stores it (gateway.config.StoredSink JSON)."""
        return f"{self.prefix}integrations:sinks"

    @property
    def deleted_sinks(self) -> str:
        """SET: names of sinks deleted through the API (until one is created again under the
        name): their deliveries still met are cancelled, not failed."""
        return f"{self.prefix}integrations:deleted"

    @property
    def receive_secret(self) -> str:
        """STRING: the receive endpoint's secret set through the API (JSON: the secret, when it
        was set, and the previous ones still accepted until their time)."""
        return f"{self.prefix}integrations:receive_secret"

    @property
    def audit(self) -> str:
        """STREAM: the audit log, one entry per admin change (field ``e``: its JSON)."""
        return f"{self.prefix}audit"

    def auth_failures(self, address: str) -> str:
        """STRING counter with a 15 min TTL: wrong admin tokens from one client address
        (gateway.web.auth_throttle)."""
        return f"{self.prefix}authfail:{address}"
