"""Serving the web application with gunicorn.

Two ways in:

* ``gunicorn 'gateway.web.wsgi:app'``: ``app`` is built on first access, in each gunicorn
  worker, from the config that ``GATEWAY_CONFIG`` / ``./gateway.toml`` names; Redis must
  be configured (``redis_url``), as the embedded one is only started by ``gateway web|run``.
* ``gateway web`` / ``gateway run``: :class:`GatewayServer`, gunicorn driven through its
  Python API. Each worker process builds its own app (nothing is preloaded in the
  master), so Redis connections and pools are never shared across a fork.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


class GatewayServer(BaseApplication):
    """gunicorn serving :func:`gateway.web.app.create_app` on ``host:port``."""

    def __init__(self, config_path: str | os.PathLike[str] | None, host: str, port: int, workers: int,
                 **options: Any) -> None:
        self.config_path = config_path
        self.options = {
            "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            "workers": workers,
            "worker_class": "sync",
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
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
