"""Ticket event gateway: signed intake, durable events, sink plugins on RQ workers.

The public API for plugin authors is re-exported here::

    from gateway import hookimpl, Event, EventType, Sink, SinkType, Target, OutgoingRequest, Outcome
"""

from gateway.events import Event, EventType
from gateway.hookspecs import hookimpl
from gateway.sinks import (
    DeliveryInfo,
    OutgoingRequest,
    Outcome,
    OutcomeKind,
    Response,
    Sink,
    SinkContext,
    SinkType,
    Target,
)

__version__ = "0.1.0"

__all__ = [
    "DeliveryInfo",
    "Event",
    "EventType",
    "OutgoingRequest",
    "Outcome",
    "OutcomeKind",
    "Response",
    "Sink",
    "SinkContext",
    "SinkType",
    "Target",
    "__version__",
    "hookimpl",
]
