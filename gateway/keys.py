"""Every Redis key the gateway writes, in one place (prefix configurable, default ``gw:``).

rq keeps its own keys (``rq:*``). Lua scripts build the same names from the prefix; keep
them in step with this module (``gateway/lua/*.lua``).
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
        """HASH: one delivery's state (see gateway/lua/publish.lua for the fields)."""
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
        status they left the delivery in: delivered / retrying / failed (finish.lua)."""
        return f"{self.prefix}sink:{sink}:stats:{hour}"

    @property
    def sinks(self) -> str:
        """SET: names of sinks that have ever had a delivery (for the sweeper)."""
        return f"{self.prefix}sinks"

    def auth_failures(self, address: str) -> str:
        """STRING counter with a 15 min TTL: wrong admin tokens from one client address
        (gateway.auth_throttle)."""
        return f"{self.prefix}authfail:{address}"
