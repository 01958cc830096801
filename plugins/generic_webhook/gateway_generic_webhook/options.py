"""The ``[[sinks]] type = "generic_webhook"`` options (the common ones, such as ``events``
and ``secret``, are validated by the core)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from gateway import PayloadTemplate, TemplateError, template_field, url_field

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
    "content-type": "use the content_type option",
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


# type/subtype, optionally with parameters: what a Content-Type header may say.
MEDIA_TYPE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
                             r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(\"[^\"\r\n]*\"|[A-Za-z0-9!#$&^_.+-]+))*$",
                             error="Not a media type such as application/json or text/plain; charset=utf-8.")


def _header_template(value: str) -> None:
    """A header value may be a template (``{{ ticket.id }}``): it must compile."""
    try:
        PayloadTemplate.compile(value)
    except TemplateError as exc:
        raise ValidationError(exc.describe()) from None


class GenericWebhookOptions(Schema):
    """``url`` (required), optional ``headers`` (values may be templates), ``user_agent``,
    ``body_template`` (a Jinja2 template for the body, instead of the guide's envelope) and
    its ``content_type``."""

    url = url_field(required=True, metadata={"label": "Webhook URL",
                                             "description": "Your endpoint: each event is POSTed there as JSON."})
    headers = fields.Dict(keys=fields.String(validate=HEADER_NAME),
                          values=fields.String(validate=[HEADER_VALUE, _header_template]),
                          load_default=dict, validate=validate.Length(max=50),
                          metadata={"description": "Extra headers sent with every request, e.g. your API key "
                                                   "(values may be templates)."})
    user_agent = fields.String(load_default=DEFAULT_USER_AGENT,
                               validate=[validate.Length(min=1, max=200), HEADER_VALUE],
                               metadata={"label": "User-Agent"})
    body_template = template_field(load_default=None, allow_none=True, metadata={
        "description": "A Jinja2 template for the body instead of the event envelope (event, data, ticket, "
                       "delivery; use |tojson for JSON values)."})
    content_type = fields.String(load_default="application/json", validate=MEDIA_TYPE,
                                 metadata={"description": "The body's media type."})

    @validates_schema
    def _no_reserved_headers(self, data: dict[str, Any], **kwargs: Any) -> None:
        problems = [f"{name} cannot be set here: {RESERVED_HEADERS[name.lower()]}."
                    for name in data.get("headers") or {} if name.lower() in RESERVED_HEADERS]
        if problems:
            raise ValidationError(problems, "headers")
