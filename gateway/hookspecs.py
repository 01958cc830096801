"""Every hook a gateway plugin can implement.

Plugins are modules (or objects) registered under the entry-point group ``gateway``.
They implement hooks with ``@gateway.hookimpl``. Registration hooks follow the
``register_*(register)`` pattern: the core hands the plugin a callback, so plugins never
touch global state and the core can reject duplicates with a clear error.
Every hook here must have a section in ``docs/writing-plugins.md`` (a test checks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click
    import flask

    from gateway.events import Event, EventType
    from gateway.sinks import SinkContext, SinkType

hookspec = pluggy.HookspecMarker("gateway")
hookimpl = pluggy.HookimplMarker("gateway")


@hookspec
def register_sink_types(register: Callable[[SinkType], None]) -> None:
    """Register sink types: call ``register(SinkType(...))`` once per type."""


@hookspec
def register_event_types(register: Callable[[EventType], None]) -> None:
    """Register event types: call ``register(EventType(...))`` once per type."""


@hookspec
def register_blueprints(register: Callable[[flask.Blueprint], None]) -> None:
    """Add HTTP endpoints: call ``register(blueprint)`` with a Flask blueprint."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``gateway`` CLI: ``@cli.command()`` on your functions."""


@hookspec
def event_published(event: Event, sinks: Sequence[str], context: SinkContext) -> None:
    """Observe an event once it is stored, with the names of the sinks it was queued for and
    the runtime's :class:`SinkContext` (its Redis, for plugins that keep state per event)."""


@hookspec
def delivery_attempted(attempt: dict[str, Any]) -> None:
    """Observe every delivery attempt once it is logged (the delivery-log attempt record)."""
