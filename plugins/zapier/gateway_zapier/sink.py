"""The Zapier sink: one delivery per REST Hook subscription of the event.

Each subscription is a :class:`~gateway.Target` (key = subscription id, url = the Zap's
target URL), so each gets its own retries and delivery log. Zapier answers 410 when a Zap
was turned off or deleted: that subscription is dropped and the sink keeps running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway import DeliveryInfo, Event, Outcome, OutgoingRequest, Response, Sink, SinkContext, Target
from gateway_zapier.payload import flatten
from gateway_zapier.subscriptions import Subscriptions

TYPE_NAME = "zapier"


class ZapierSink(Sink):
    """Delivers flat JSON payloads to every Zap subscribed to an event."""

    def __init__(self, name: str, options: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, options, context)
        self.subscriptions = Subscriptions(context, name)

    @property
    def enabled(self) -> bool:
        """False when the sink is configured with ``enabled = false``."""
        return bool(self.options.get("enabled", True))

    def offers(self, event_name: str) -> bool:
        """True when this sink's ``events`` let a Zap subscribe to ``event_name``."""
        events = self.options.get("events") or ()
        if event_name in events:
            return True
        # "*" is every event but the gateway's system events, which are named one by one.
        return "*" in events and event_name in self.context.event_types and not (
            self.context.event_types.get(event_name).system)

    def offered_events(self) -> list[str]:
        """The events a Zap may subscribe to here (``*`` spelled out), in catalogue order."""
        return [name for name in self.context.event_types.names() if self.offers(name)]

    @property
    def api_keys(self) -> list[dict[str, Any]]:
        """``{"label", "key"}`` per configured key (see :class:`gateway_zapier.options.ApiKey`)."""
        return list(self.options.get("api_keys") or ())

    @property
    def creates_tickets(self) -> bool:
        """False when the sink is configured with ``create_tickets = false``."""
        return bool(self.options.get("create_tickets", True))

    def targets(self, event: Event) -> list[Target]:
        """One target per subscription to this event (none: nothing is queued)."""
        return [Target(key=sub.id, url=sub.target_url) for sub in self.subscriptions.for_event(event.name)]

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """POST the flat payload (:func:`~gateway_zapier.payload.flatten`, the function the
        samples are made with too); signed when the sink has a secret."""
        body = OutgoingRequest.json_body(flatten(event, self.context.public_url))
        return OutgoingRequest(url=target.url, body=body, sign=True,
                               headers={"Content-Type": "application/json", "X-Webhook-Event": event.name})

    def classify(self, response: Response, target: Target) -> Outcome:
        """The reference policy (:meth:`gateway.Sink.classify`: 2xx delivered, 408/425/429/5xx
        retried after Retry-After, other answers given up), with Zapier's meaning of 410."""
        if response.status_code == 410:
            return Outcome.gone("Zapier answered HTTP 410: the Zap was turned off or deleted")
        return super().classify(response, target)

    def on_gone(self, target: Target, reason: str) -> bool:
        """Drop the subscription whose Zap is gone; the sink itself keeps running."""
        self.subscriptions.delete(target.key)
        return False


def zapier_sinks(context: SinkContext) -> list[ZapierSink]:
    """The zapier sinks this process runs (from the context: no registry of our own)."""
    return [sink for sink in context.sinks(TYPE_NAME) if isinstance(sink, ZapierSink)]
