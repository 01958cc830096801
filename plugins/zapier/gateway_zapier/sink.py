"""The Zapier sink: one delivery per REST Hook subscription of the event.

Each subscription is a :class:`~gateway.Target` (key = subscription id, url = the Zap's
target URL), so each gets its own retries and delivery log. Zapier answers 410 when a Zap
was turned off or deleted: that subscription is dropped and the sink keeps running.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway import DeliveryInfo, Event, Outcome, OutgoingRequest, Response, Sink, SinkContext, Target
from gateway.http import parse_retry_after
from gateway_zapier.payload import flatten
from gateway_zapier.subscriptions import Subscriptions

# The zapier sinks built for each runtime's context, so the event_published hook (which
# gets the context) knows whether any of them offers an event, without a Redis read.
_LIVE: weakref.WeakKeyDictionary[SinkContext, weakref.WeakSet[ZapierSink]] = weakref.WeakKeyDictionary()


class ZapierSink(Sink):
    """Delivers flat JSON payloads to every Zap subscribed to an event."""

    def __init__(self, name: str, options: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, options, context)
        self.subscriptions = Subscriptions(context, name)
        _LIVE.setdefault(context, weakref.WeakSet()).add(self)

    @property
    def enabled(self) -> bool:
        """False when the sink is configured with ``enabled = false``."""
        return bool(self.options.get("enabled", True))

    def offers(self, event_name: str) -> bool:
        """True when this sink's ``events`` let a Zap subscribe to ``event_name``."""
        events = self.options.get("events") or ()
        return "*" in events or event_name in events

    def targets(self, event: Event) -> list[Target]:
        """One target per subscription to this event (none: nothing is queued)."""
        return [Target(key=sub.id, url=sub.target_url) for sub in self.subscriptions.for_event(event.name)]

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """POST the flat payload; signed when the sink has a secret."""
        body = OutgoingRequest.json_body(flatten(event, self.context.public_url))
        return OutgoingRequest(url=target.url, body=body, sign=True,
                               headers={"Content-Type": "application/json", "X-Webhook-Event": event.name})

    def classify(self, response: Response, target: Target) -> Outcome:
        """2xx delivered; 410 the Zap is gone; anything else is retried (after Retry-After
        when Zapier sends one)."""
        if response.ok:
            return Outcome.delivered()
        if response.status_code == 410:
            return Outcome.gone("Zapier answered HTTP 410: the Zap was turned off or deleted")
        not_before = parse_retry_after(response.header("Retry-After"), datetime.now(UTC))
        return Outcome.retry(f"Zapier answered HTTP {response.status_code}", not_before)

    def on_gone(self, target: Target, reason: str) -> bool:
        """Drop the subscription whose Zap is gone; the sink itself keeps running."""
        self.subscriptions.delete(target.key)
        return False


def live_sinks(context: SinkContext) -> list[ZapierSink]:
    """The zapier sinks built on ``context`` (one runtime's), by name."""
    return sorted(_LIVE.get(context, ()), key=lambda sink: sink.name)
