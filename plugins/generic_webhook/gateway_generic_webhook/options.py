"""The ``[[sinks]] type = "generic_webhook"`` options (the common ones, such as ``events``
and ``secret``, are validated by the core)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from gateway import url_field

DEFAULT_USER_AGENT = "AI-Support-Autoresponder/1.0"

# RFC 9110 token characters: what a header name may consist of.
HEADER_NAME = validate.Regexp(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$",
                              error="Not a valid HTTP header name.")
# Visible characters, spaces and tabs only: a CR or LF would smuggle in another header.
HEADER_VALUE = validate.Regexp(r"^[\t\x20-\x7e\x80-\xff]{0,4000}$",
                               error="Header values cannot contain line breaks or control characters.")

# What the sink itself sets, and what the core or HTTP owns: a static header must not
# replace any of them (a wrong signature or delivery id would break every receiver).
RESERVED_HEADERS = {
    "content-type": "the body is always JSON",
    "content-length": "it is computed from the body",
    "transfer-encoding": "it is set by the HTTP client",
    "host": "it comes from url",
    "connection": "the HTTP client manages connections",
    "user-agent": "use the user_agent option",
    "x-webhook-event": "it is the event's name",
    "x-webhook-delivery": "it is the delivery id receivers deduplicate on",
    "x-webhook-signature": "it is computed from secret",
    "webhook-id": "it is the delivery id (Standard Webhooks)",
    "webhook-timestamp": "it is set when signing (Standard Webhooks)",
    "webhook-signature": "it is computed from secret (Standard Webhooks)",
}


class GenericWebhookOptions(Schema):
    """``url`` (required), optional static ``headers`` and ``user_agent``."""

    url = url_field(required=True, metadata={"label": "Webhook URL",
                                             "description": "Your endpoint: each event is POSTed there as JSON."})
    headers = fields.Dict(keys=fields.String(validate=HEADER_NAME), values=fields.String(validate=HEADER_VALUE),
                          load_default=dict, validate=validate.Length(max=50),
                          metadata={"description": "Extra headers sent with every request, e.g. your API key."})
    user_agent = fields.String(load_default=DEFAULT_USER_AGENT,
                               validate=[validate.Length(min=1, max=200), HEADER_VALUE],
                               metadata={"label": "User-Agent"})

    @validates_schema
    def _no_reserved_headers(self, data: dict[str, Any], **kwargs: Any) -> None:
        problems = [f"{name} cannot be set here: {RESERVED_HEADERS[name.lower()]}."
                    for name in data.get("headers") or {} if name.lower() in RESERVED_HEADERS]
        if problems:
            raise ValidationError(problems, "headers")
