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
    """Installed plugins first (those with sink types leading, failed ones included); the
    core's builtin modules, which are plugins too, folded below them."""
    listed = runtime().plugins.plugin_list()
    installed = sorted((p for p in listed if not p.builtin), key=lambda p: (not p.sink_types, p.name))
    builtin = [p for p in listed if p.builtin]
    return render_template("admin/plugins.html", title="Plugins", plugins=installed, builtin=builtin,
                           gateway_version=gateway.__version__)
