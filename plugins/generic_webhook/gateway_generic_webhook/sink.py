"""Render an event as the guide's webhook. Answers are judged by the reference policy
(:meth:`gateway.Sink.classify`): 2xx delivered; 410 gone, which pauses the sink until an
admin fixes its ``url`` and resumes it; 408, 425, 429 and 5xx retried (after
``Retry-After`` when the receiver sends one); any other answer, redirects included (they
are never followed: a redirect could carry a signed event to a host nobody configured),
given up at once and left for a replay once the receiver is fixed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway import (
    DeliveryInfo,
    Event,
    OutgoingRequest,
    PayloadTemplate,
    Sink,
    SinkContext,
    Target,
    TemplateError,
    render_body,
    template_variables,
)

# What a rendered header value may hold: no CR, LF or other control character, which would
# let event data smuggle in a header of its own.
HEADER_VALUE = re.compile(r"^[\t\x20-\x7e\x80-\xff]{0,4000}$")
TEMPLATE_MARKS = ("{{", "{%", "{#")


class GenericWebhookSink(Sink):
    """POST the envelope (or the ``body_template``'s rendering) to ``url``; signed by the
    core when a secret is configured."""

    def __init__(self, name: str, options: Mapping[str, Any], context: SinkContext) -> None:
        super().__init__(name, options, context)
        # Compiled once per sink (options are validated, so these compile).
        source = options.get("body_template")
        self._body = PayloadTemplate.compile(source) if source else None
        self._headers = {key: PayloadTemplate.compile(value) if any(m in value for m in TEMPLATE_MARKS) else value
                         for key, value in (options.get("headers") or {}).items()}

    def render(self, event: Event, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        """The guide's payload and headers, or the body the template renders (the signature
        covers those bytes). The delivery id is the same on every retry and replay, so
        receivers can drop duplicates (delivery is at-least-once). A template that fails
        raises :class:`gateway.TemplateError`: the delivery fails with ``template_error``."""
        headers = self._render_headers(event, delivery)
        content_type = self.options.get("content_type") or "application/json"
        headers.update({
            "Content-Type": content_type,
            "User-Agent": self.options["user_agent"],
            "X-Webhook-Event": event.name,
            "X-Webhook-Delivery": delivery.id,
        })
        # sign=True: the core adds X-Webhook-Signature and webhook-id/-timestamp/-signature
        # over these exact bytes with the sink's secret(s); nothing when none is configured.
        body = render_body(self._body, event, delivery, content_type) if self._body else event.envelope_bytes()
        return OutgoingRequest(url=target.url, body=body, headers=headers, sign=True)

    def _render_headers(self, event: Event, delivery: DeliveryInfo) -> dict[str, str]:
        headers: dict[str, str] = {}
        variables: dict[str, Any] | None = None
        for key, value in self._headers.items():
            if isinstance(value, str):
                headers[key] = value
                continue
            variables = variables or template_variables(event, delivery)
            try:
                rendered = value.render(variables)
            except TemplateError as exc:
                raise TemplateError(f"header {key}: {exc.message}", exc.line, exc.column) from None
            if not HEADER_VALUE.match(rendered):
                raise TemplateError(f"header {key}: the value has a line break or control character, or is "
                                    "longer than 4000 characters.")
            headers[key] = rendered
        return headers
