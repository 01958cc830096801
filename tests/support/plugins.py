"""Small plugins the core's tests register: two minimal sink types and an observer.

* ``plain`` (:class:`PlainSinkPlugin`): the delivery engine tests' sink: POSTs the envelope,
  signed, with the event and delivery headers. Worker processes get it through
  :mod:`support.plain_worker`.
* ``envelope`` (:class:`EnvelopeSinkPlugin`): POSTs the guide's envelope, signed.
* ``keyed`` (:class:`KeyedSinkPlugin`): POSTs the event with its ``api_key`` option, a
  secret option, in the body (as some APIs want their key).
* :class:`EventRecorder`: the names of the events published (what sinks are told about).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields

from gateway import hookimpl
from gateway.config import url_field
from gateway.sinks import DeliveryInfo, OutgoingRequest, Sink, SinkType, Target


class UrlOptions(Schema):
    url = url_field(required=True)


class PlainSink(Sink):
    """The smallest real sink: POST the envelope, signed, with the delivery id."""

    def render(self, event: Any, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                               headers={"Content-Type": "application/json", "X-Webhook-Event": event.name,
                                        "X-Webhook-Delivery": delivery.id})


class PlainSinkPlugin:
    """Registers the ``plain`` sink type (for in-process tests)."""

    __name__ = "plain_sink_plugin"

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="plain", options_schema=UrlOptions, factory=PlainSink))


class EnvelopeSink(Sink):
    """A minimal sink: POST the guide's envelope to ``url``."""

    def render(self, event: Any, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                               headers={"Content-Type": "application/json"})


class EnvelopeSinkPlugin:
    """Registers the ``envelope`` sink type, for tests that need a configured sink."""

    __name__ = "envelope_sink_plugin"

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="envelope", options_schema=UrlOptions, factory=EnvelopeSink))


class KeyedOptions(Schema):
    url = url_field(required=True)
    api_key = fields.String(required=True)


class KeyedSink(Sink):
    """Puts its secret ``api_key`` into the body it sends."""

    def render(self, event: Any, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        body = OutgoingRequest.json_body({"api_key": self.options["api_key"], "event": event.name,
                                          "data": event.data})
        return OutgoingRequest(url=target.url, body=body, headers={"Content-Type": "application/json"})


class KeyedSinkPlugin:
    """Registers the ``keyed`` sink type (secret option ``api_key``)."""

    __name__ = "keyed_sink_plugin"

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="keyed", options_schema=KeyedOptions, factory=KeyedSink,
                          secret_options=frozenset({"api_key"})))


class EventRecorder:
    """A plugin recording the name of every event published (what sinks are told about)."""

    __name__ = "event_recorder"

    def __init__(self) -> None:
        self.names: list[str] = []

    @hookimpl
    def event_published(self, event: Any, sinks: Any) -> None:
        self.names.append(event.name)
