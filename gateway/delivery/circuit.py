"""The per-sink circuit breaker.

After ``failure_threshold`` consecutive failed attempts of a sink, its circuit opens for a
cool-down (``delivery.circuit_cooldown``): nothing of that sink is claimed, so its
deliveries wait in the ready list or for their retry, and are not charged an attempt.
When the cool-down ends, a scheduled wake-up starts a drainer and exactly one *probe*
delivery is let through (claim.lua): success closes the circuit and resets the streak;
failure opens it again for twice as long, up to ``delivery.circuit_max_cooldown``
(finish.lua). The state lives in the sink's state hash, so every process sees it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover, no mutate (imports for annotations only)
    from gateway.config import SinkConfig
    from gateway.runtime import Runtime


@dataclasses.dataclass(frozen=True)  # pragma: no mutate (nothing assigns to one: frozen=False is equivalent)
class CircuitSettings:
    """A sink's breaker parameters, in the units finish.lua takes."""

    failure_threshold: int
    cooldown_ms: int
    max_cooldown_ms: int

    @classmethod
    def for_sink(cls, runtime: Runtime, sink: SinkConfig | None) -> CircuitSettings:
        """``sink``'s parameters; the [delivery] defaults for a sink not configured here."""
        delivery = runtime.settings.delivery
        base = int(delivery.circuit_cooldown * 1000)
        threshold = sink.failure_threshold if sink is not None else delivery.failure_threshold
        return cls(threshold, base, max(base, int(delivery.circuit_max_cooldown * 1000)))
