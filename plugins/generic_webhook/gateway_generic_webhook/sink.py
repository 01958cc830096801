"""Render an event as the guide's webhook and judge the receiver's answer."""

from __future__ import annotations

from gateway import DeliveryInfo, Event, Outcome, OutgoingRequest, Response, Sink, Target
from gateway.http import retry_after

RETRY_AFTER_STATUSES = (429, 503)


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

    def classify(self, response: Response, target: Target) -> Outcome:
        """2xx delivered; 410 gone (pauses the sink); 429/503 retried no sooner than
        Retry-After; anything else, redirects included, retried on the schedule."""
        status = response.status_code
        if response.ok:
            return Outcome.delivered()
        if status == 410:
            return Outcome.gone("HTTP 410 Gone: the receiver says this webhook no longer exists; "
                                "fix the sink's url, then resume the sink")
        if status in RETRY_AFTER_STATUSES:
            return Outcome.retry(f"HTTP {status}", not_before=retry_after(response))
        if 300 <= status < 400:
            # Following a redirect could carry a signed event to a host nobody configured.
            return Outcome.retry(f"HTTP {status}: redirect not followed; set the sink's url to the final address")
        return Outcome.retry(f"HTTP {status}")
