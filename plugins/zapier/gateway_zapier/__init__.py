"""Zapier sink plugin for the ticket event gateway (sink type ``zapier``, REST Hooks).

A Zap subscribes with ``POST /api/zapier/hooks``; every published event then goes, as a
flat JSON payload, to each Zap subscribed to it. And a Zap can create a ticket with
``POST /api/zapier/tickets`` (the "Create ticket" action). Configure::

    [[sinks]]
    name = "zapier"
    type = "zapier"
    events = ["ticket.created", "ticket.resolved"]
    api_keys = [{label = "marketing", key = "${ZAPIER_MARKETING_KEY}"}, "${ZAPIER_API_KEY}"]

See docs/zapier.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway import Event, SinkContext, SinkType, hookimpl
from gateway_zapier import samples
from gateway_zapier.options import ZapierOptions
from gateway_zapier.sink import TYPE_NAME, ZapierSink, zapier_sinks

if TYPE_CHECKING:  # pragma: no cover
    import flask


@hookimpl
def register_sink_types(register: Callable[[SinkType], None]) -> None:
    """Provide the ``zapier`` sink type."""
    register(SinkType(name=TYPE_NAME, options_schema=ZapierOptions, factory=ZapierSink,
                      description="Zapier REST Hooks: one delivery per subscribed Zap",
                      secret_options=frozenset({"api_keys"}), signs=True,
                      # One target per subscription: a Zap whose URL is dead must not stall the others.
                      fan_out=True))


@hookimpl
def register_blueprints(register: Callable[[flask.Blueprint], None]) -> None:
    """Add the ``/api/zapier`` endpoints."""
    from gateway_zapier.api import bp

    register(bp)


@hookimpl
def event_published(event: Event, context: SinkContext) -> None:
    """Keep the event as sample data of each zapier sink offering it (Zapier's perform list)."""
    import redis

    offering = [sink.name for sink in zapier_sinks(context) if sink.enabled and sink.offers(event.name)]
    if offering:
        try:
            samples.record(context, offering, event)
        except redis.RedisError:
            # The event is already stored and acknowledged; a missed sample is harmless.
            pass
