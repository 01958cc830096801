"""The Slack sink: render a message, classify Slack's answer. The core does the rest."""

from __future__ import annotations

from gateway import DeliveryInfo, Event, Outcome, OutgoingRequest, Response, Sink, Target
from gateway_slack import outcomes
from gateway_slack.message import build_message


class SlackSink(Sink):
    """Posts to a Slack incoming webhook (the sink's ``url``)."""

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """The event as a Slack attachments message, headed by the event's catalogue title;
        Slack does not verify signatures."""
        catalogue = self.context.event_types
        label = catalogue.get(event.name).title if event.name in catalogue else None
        message = build_message(event, self.options, self.context.public_url, label)
        return OutgoingRequest(url=target.url, body=OutgoingRequest.json_body(message),
                               headers={"Content-Type": "application/json; charset=utf-8"})

    def classify(self, response: Response, target: Target) -> Outcome:
        """Slack's status code and plain-text error code decide (see :mod:`gateway_slack.outcomes`)."""
        return outcomes.classify(response)
