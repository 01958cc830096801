"""Test events: a sample of an event type, published to one sink through the normal path
(``gateway send-test``, ``POST /api/sinks/<name>/test``, the console's "Send test")."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.delivery.sink_state import require_sink
from gateway.events import Event
from gateway.publish.publisher import Published, publish

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime


def sample_event(runtime: Runtime, event_name: str, sink_name: str | None = None) -> Event:
    """A new ``event_name`` event with sample data: ``sink_name``'s own
    :meth:`~gateway.sinks.Sink.sample_event` when it has one, else the catalogue's sample
    (what test events, filter tests and template previews use). Raises
    gateway.events.UnknownEvent."""
    event_type = runtime.plugins.catalog.get(event_name)
    data = runtime.sinks[sink_name].sample_event(event_name) if sink_name is not None else None
    return Event.new(event_name, dict(data or event_type.sample))


def send_test(runtime: Runtime, event_name: str, sink_name: str) -> Published:
    """Publish a sample ``event_name`` (:func:`sample_event`) through the normal path, to
    ``sink_name`` only. Raises UnknownSink, or gateway.events.UnknownEvent."""
    require_sink(runtime, sink_name)
    return publish(runtime, sample_event(runtime, event_name, sink_name), only_sink=sink_name)
