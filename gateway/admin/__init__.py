"""Builtin plugin: the admin console in the browser at ``/admin`` (Settings → Integrations).

Server-rendered pages over the same functions the JSON admin API and the CLI use: sinks
with their state and 24-hour counts, test events, the delivery log with replay, the
events catalogue and the loaded plugins. Sign-in is with the admin token.
"""

from __future__ import annotations

from collections.abc import Callable

import flask

from gateway.admin import catalogue, deliveries, integrations, signin  # noqa: F401  (attach their views)
from gateway.admin.blueprint import bp
from gateway.hookspecs import hookimpl


@hookimpl
def register_blueprints(register: Callable[[flask.Blueprint], None]) -> None:
    """Serve the console under ``/admin``."""
    register(bp)
