"""gunicorn settings for serving the gateway with plain gunicorn::

    gunicorn -c python:gateway.web.gunicorn_conf 'gateway.web.wsgi:app' -b 0.0.0.0:8080 -w 4

The worker class, connections per worker and keep-alive that ``gateway web`` uses, from the
``[web]`` section of the config ``GATEWAY_CONFIG`` (or ``./gateway.toml``) names; options
given on the command line after ``-c`` still win.
"""

from __future__ import annotations

from typing import Any

from gateway.config import load_config
from gateway.web.wsgi import gunicorn_options

_web = load_config().web
globals().update(gunicorn_options(_web))
control_socket_disable = True  # as gateway web: several gateways on one machine must not share one


def on_starting(server: Any) -> None:
    """gunicorn's hook in the master: the workers forked from it read their limits here."""
    server.app.web_settings = _web
