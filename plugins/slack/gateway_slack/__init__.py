"""Slack sink plugin for the ticket event gateway (sink type ``slack``).

Posts each event to a Slack incoming webhook as a colour-coded attachment. Configure::

    [[sinks]]
    name = "slack-support"
    type = "slack"
    url = "${SLACK_WEBHOOK_URL}"
    events = ["ticket.created", "ticket.escalated"]
    mention = {"ticket.escalated" = "<!here>"}

See docs/slack.md.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway import SinkType, hookimpl
from gateway_slack.options import SlackOptions
from gateway_slack.sink import SlackSink

# Slack's documented limit for incoming webhooks is about one message per second.
DEFAULT_RATE_LIMIT = 1.0


@hookimpl
def register_sink_types(register: Callable[[SinkType], None]) -> None:
    """Provide the ``slack`` sink type."""
    register(SinkType(name="slack", options_schema=SlackOptions, factory=SlackSink,
                      description="Slack incoming webhook: colour-coded attachments per event",
                      default_rate_limit=DEFAULT_RATE_LIMIT, secret_options=frozenset({"url"})))
