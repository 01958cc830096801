"""Ticket event gateway: signed intake, durable events, sink plugins on RQ workers.

This package is the plugin API: everything a plugin needs is importable from here (and
its tests' helpers from :mod:`gateway.testing`); nothing else is public. Names listed in
``__all__`` keep working within a major version (see docs/writing-plugins.md, "Stability")::

    from gateway import DeliveryInfo, Event, OutgoingRequest, Outcome, Sink, SinkType, Target, hookimpl
"""

from importlib import metadata as _metadata

from gateway import _renamed
from gateway.errors import ApiError, ConfigError
from gateway.events import Event, EventType, iso_z
from gateway.hookspecs import hookimpl
from gateway.sinks import (
    CreatedTicket,
    DeliveryInfo,
    DestinationRefused,
    Outcome,
    OutcomeKind,
    OutgoingRequest,
    RenderFailed,
    Response,
    Sink,
    SinkContext,
    SinkType,
    Target,
    current_context,
    url_field,
)
from gateway.templates import (
    PayloadTemplate,
    TemplateError,
    render_body,
    template_field,
    template_variables,
)

try:
    __version__ = _metadata.version("ticket-event-gateway")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_renamed.install()

__all__ = [
    "ApiError",
    "ConfigError",
    "CreatedTicket",
    "DeliveryInfo",
    "DestinationRefused",
    "Event",
    "EventType",
    "Outcome",
    "OutcomeKind",
    "OutgoingRequest",
    "PayloadTemplate",
    "RenderFailed",
    "Response",
    "Sink",
    "SinkContext",
    "SinkType",
    "Target",
    "TemplateError",
    "__version__",
    "current_context",
    "hookimpl",
    "iso_z",
    "render_body",
    "template_field",
    "template_variables",
    "url_field",
]
