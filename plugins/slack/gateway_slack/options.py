"""The ``[[sinks]] type = "slack"`` options (the common ones are validated by the core)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from gateway import url_field

EVENT_OR_STAR = validate.Regexp(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)+)$",
                                error="Use an event name such as ticket.escalated, or * for every event.")


class SlackOptions(Schema):
    """``url`` is the incoming webhook URL Slack gives you (a secret: keep it out of the
    file with ``url = "${SLACK_WEBHOOK_URL}"``)."""

    url = url_field(required=True, metadata={
        "label": "Webhook URL", "description": "The incoming webhook URL Slack gives you."})
    channel = fields.String(load_default=None, validate=validate.Length(min=1, max=80),
                            metadata={"description": "e.g. #support; blank: the webhook's own channel."})
    username = fields.String(load_default=None, validate=validate.Length(min=1, max=80),
                             metadata={"description": "The name messages are posted under."})
    icon_emoji = fields.String(load_default=None, validate=validate.Regexp(
        r"^:[a-z0-9_+'-]+:$", error="Use an emoji code such as :ticket:."), metadata={"description": "e.g. :ticket:"})
    mention = fields.Dict(keys=fields.String(validate=EVENT_OR_STAR),
                          values=fields.String(validate=validate.Length(min=1, max=200)), load_default=dict,
                          metadata={"description": "Who to mention per event, e.g. ticket.escalated: <!here>"})
