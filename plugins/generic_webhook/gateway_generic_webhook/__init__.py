"""Generic webhook sink plugin for the ticket event gateway (sink type ``generic_webhook``).

POSTs each event to your endpoint exactly as the Webhooks Guide describes: the body is the
``{"event", "timestamp", "data"}`` envelope, with ``X-Webhook-Event``, ``X-Webhook-Delivery``
and, when the sink has a ``secret`` (or ``secrets`` while rotating), ``X-Webhook-Signature``
plus the Standard Webhooks headers. Configure::

    [[sinks]]
    name = "crm"
    type = "generic_webhook"
    url = "https://crm.example.com/hooks/support"
    secret = "${CRM_WEBHOOK_SECRET}"
    events = ["ticket.created", "ticket.resolved"]
    headers = {"X-Tenant" = "acme"}

Built only on the public plugin API, like a third-party plugin. See docs/signatures.md
for how a receiver verifies the signatures.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway import SinkType, hookimpl
from gateway_generic_webhook.options import GenericWebhookOptions
from gateway_generic_webhook.sink import GenericWebhookSink

__all__ = ["GenericWebhookOptions", "GenericWebhookSink", "register_sink_types"]


@hookimpl
def register_sink_types(register: Callable[[SinkType], None]) -> None:
    """Provide the ``generic_webhook`` sink type."""
    register(SinkType(name="generic_webhook", options_schema=GenericWebhookOptions, factory=GenericWebhookSink,
                      description="POST the guide's signed JSON envelope to any URL",
                      secret_options=frozenset({"headers"}), signs=True))
