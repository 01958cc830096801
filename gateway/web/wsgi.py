"""Serving the web application with gunicorn.

Two ways in, both with :mod:`gateway.web.serving`'s worker (gevent, read deadlines, whole
bodies before the application), which keeps idle and slow clients from holding the server:

* ``gunicorn -c python:gateway.web.gunicorn_conf 'gateway.web.wsgi:app'``: ``app`` is built
  on first access, in each gunicorn worker, from the config that ``GATEWAY_CONFIG`` /
  ``./gateway.toml`` names; Redis must be configured (``redis_url``), as the embedded one is
  only started by ``gateway web|run``. Without ``-c python:gateway.web.gunicorn_conf``
  gunicorn uses its sync worker, and the app logs a warning saying so.
* ``gateway web`` / ``gateway run``: :class:`GatewayServer`, gunicorn driven through its
  Python API. Each worker process builds its own app (nothing is preloaded in the
  master), so Redis connections and pools are never shared across a fork.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from gateway.config import WebSettings

WORKER_CLASS = "gateway.web.serving.GatewayWorker"
log = logging.getLogger("gateway.web")


def gunicorn_options(web: WebSettings) -> dict[str, Any]:
    """The gunicorn settings that serve with :mod:`gateway.web.serving`'s worker under
    ``web``'s limits (the worker reads the timeouts from ``web_settings`` on the application)."""
    return {
        "worker_class": WORKER_CLASS,
        "worker_connections": web.max_connections,
        # gunicorn's async workers bound a request's headers only with keep-alive on; the
        # bound itself is header_timeout (GatewayWorker.timeout_ctx): this switches it on.
        "keepalive": max(1, math.ceil(web.header_timeout)),
    }


class GatewayServer(BaseApplication):
    """gunicorn serving :func:`gateway.web.app.create_app` on ``host:port``."""

    def __init__(self, config_path: str | os.PathLike[str] | None, host: str, port: int, workers: int,
                 web: WebSettings | None = None, **options: Any) -> None:
        self.config_path = config_path
        self.web_settings = web or WebSettings()
        """Read by every worker (:class:`gateway.web.serving.GatewayWorker`) after the fork."""
        self.options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": workers,
            **gunicorn_options(self.web_settings),
            "proc_name": "gateway-web",
            "accesslog": None,
            "errorlog": "-",
            # gunicorn's own lines in the format `--log-format` chose (see gateway.logs).
            "logger_class": "gateway.logs.GunicornLogger",
            "graceful_timeout": 10,
            # The master must not import the app: every worker builds its own runtime.
            "preload_app": False,
            **options,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        if "control_socket_disable" in self.cfg.settings and "control_socket_disable" not in self.options:
            # gunicorn >= 25.1 opens one control socket per user by default: several
            # gateways (or tests) on one machine would fight over it.
            self.cfg.set("control_socket_disable", True)

    def load(self) -> Any:
        from gateway.web.app import create_app

        return create_app(config_path=self.config_path)


def __getattr__(name: str) -> Any:
    # ``gateway.web.wsgi:app`` is built lazily so that importing this module (as ``gateway web``
    # does in the gunicorn master) does not connect to Redis or load plugins.
    if name == "app":
        from gateway.runtime import Runtime
        from gateway.web.app import create_app

        # Never start the embedded Redis here: every gunicorn worker would start its own, and
        # none would stop it. Use `gateway web` / `gateway run` for that, or set a redis_url.
        runtime = Runtime.from_config(start_embedded=False)
        if runtime.embedded is not None and not runtime.embedded.is_running():
            raise RuntimeError("gateway.web.wsgi:app needs gateway.redis_url (or GATEWAY_REDIS_URL); "
                               "`gateway web` starts the embedded Redis itself")
        application = create_app(runtime)
        if "gevent" not in sys.modules or not _gevent_patched():
            log.warning("gateway.web.wsgi:app is served by a worker that a slow or idle client can hold; "
                        "start gunicorn with -c python:gateway.web.gunicorn_conf (see docs/deployment.md)")
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _gevent_patched() -> bool:
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))
