"""The admin console in the browser at ``/admin`` (Settings → Integrations).

Server-rendered pages over the same functions the JSON admin API and the CLI use: sinks
with their state and 24-hour counts, test events, the delivery log with replay, the
events catalogue and the loaded plugins. Sign-in is with the admin token.
"""

from __future__ import annotations

from gateway.web.admin import (  # noqa: F401  (attach their views and template helpers)
    audit_log,
    catalogue,
    charts,
    deliveries,
    integrations,
    manage,
    receive_settings,
    signin,
    tickets,
    tryout,
)
from gateway.web.admin.blueprint import bp

__all__ = ["bp"]
