"""Render an event as the guide's webhook. Answers are judged by the reference policy
(:meth:`gateway.Sink.classify`): 2xx delivered; 410 gone, which pauses the sink until an
admin fixes its ``url`` and resumes it; 408, 425, 429 and 5xx retried (after
``Retry-After`` when the receiver sends one); any other answer, redirects included (they
are never followed: a redirect could carry a signed event to a host nobody configured),
given up at once and left for a replay once the receiver is fixed."""

from __future__ import annotations

from gateway import DeliveryInfo, Event, OutgoingRequest, Sink, Target


class GenericWebhookSink(Sink):
    """POST the envelope to ``url``; signed by the core when a secret is configured."""

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """The guide's payload and headers. The delivery id is the same on every retry and
        replay, so receivers can drop duplicates (delivery is at-least-once)."""
        headers = dict(self.options.get("headers") or {})
        headers.update({
            "Content-Type": "application/json",
            "User-Agent": self.options["user_agent"],
            "X-Webhook-Event": event.name,
            "X-Webhook-Delivery": delivery.id,
        })
        # sign=True: the core adds X-Webhook-Signature and webhook-id/-timestamp/-signature
        # over these exact bytes with the sink's secret(s); nothing when none is configured.
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), headers=headers, sign=True)
