"""The events catalogue and the loaded plugins, with their versions."""

from __future__ import annotations

from flask import render_template

import gateway
from gateway.web.admin.blueprint import bp, runtime


@bp.route("/events")
def events() -> str:
    """Every event type a sink can subscribe to, with its description and a sample payload."""
    catalog = runtime().plugins.catalog
    subscribers = {name: [s.name for s in runtime().subscribers(name)] for name in catalog.names()}
    return render_template("admin/events.html", title="Events", event_types=list(catalog),
                           subscribers=subscribers)


@bp.route("/plugins")
def plugins() -> str:
    """Loaded plugins (builtins carry the gateway's own version), and those that failed to load."""
    return render_template("admin/plugins.html", title="Plugins", plugins=runtime().plugins.plugin_list(),
                           gateway_version=gateway.__version__)
