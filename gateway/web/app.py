"""create_app(): the web application, and the WSGI stack it is served through.

All per-process state lives in the :class:`~gateway.runtime.Runtime` (``app.extensions
["gateway"]``), built once: schemas, config, subscriber tables, the Redis pool and the Lua
scripts are ready before the first request. ``app.wsgi_app`` is, from the outside in:

* ``ProxyFix`` when ``trusted_proxies`` is set (every layer then sees the client's address);
* :class:`~gateway.web.instrumentation.RequestInstrumentation`: timing, access line, metrics;
* a dispatcher sending ``/api/webhooks/receive`` to :class:`~gateway.web.receive.ReceiveApp`
  and everything else to Flask: the JSON API, the admin console, plugins' blueprints.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.errors import (
    ApiError,
    http_error,
    internal_error,
    too_large,
)
from gateway.publish import plugin_services
from gateway.redact import register_settings_secrets
from gateway.runtime import Runtime
from gateway.sinks import CONTEXT_EXTENSION
from gateway.web import admin, receive
from gateway.web.api import (
    audit,
    deliveries,
    events,
    filters,
    health,
    metrics,
    openapi,
    plugins,
    receive_secret,
    sinks,
    templates,
    tickets,
)
from gateway.web.instrumentation import ROUTE_KEY, RequestInstrumentation
from gateway.web.storage_errors import storage_error

log = logging.getLogger("gateway.web")

CORE_BLUEPRINTS = (events.bp, tickets.bp, deliveries.bp, sinks.bp, filters.bp, templates.bp, receive_secret.bp,
                   audit.bp, plugins.bp, health.bp, metrics.bp, openapi.bp, admin.bp)
FIXED_ROUTES = (receive.PATH, "/healthz", "/readyz", "/metrics")


def create_app(runtime: Runtime | None = None, config_path: str | os.PathLike[str] | None = None) -> Flask:
    """Build the web application around ``runtime`` (or one loaded from config)."""
    runtime = plugin_services.provide(runtime or Runtime.from_config(config_path))
    register_settings_secrets(runtime.settings)
    app = Flask("gateway")
    app.extensions["gateway"] = runtime
    app.extensions[CONTEXT_EXTENSION] = runtime.context  # what plugins' views get from current_context()
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in (*CORE_BLUEPRINTS, *runtime.plugins.blueprints):
        app.register_blueprint(blueprint)
    _register_error_handlers(app)

    plugin_blueprints = frozenset(blueprint.name for blueprint in runtime.plugins.blueprints)

    @app.before_request
    def _name_the_route() -> None:
        # The request metrics label requests by route (see gateway.web.instrumentation).
        if request.url_rule is not None:
            request.environ[ROUTE_KEY] = request.url_rule.rule

    @app.before_request
    def _current_integrations() -> None:
        # A plugin's endpoint finds its sinks through its context (SinkContext.sinks): like
        # the core's admin endpoints, it first checks the integrations version (one GET), so
        # a sink created or changed through the sinks API in another process is seen.
        if request.blueprint in plugin_blueprints:
            runtime.refresh()

    stack: Any = DispatcherMiddleware(app.wsgi_app, {
        receive.PATH: receive.ReceiveApp(runtime, ensure_ascii=getattr(app.json, "ensure_ascii", True))})
    stack = RequestInstrumentation(stack, runtime.metrics, FIXED_ROUTES)
    if runtime.settings.trusted_proxies:
        # Outermost, so every layer sees the client's address, not the proxy's.
        hops = runtime.settings.trusted_proxies
        stack = ProxyFix(stack, x_for=hops, x_proto=hops)
    app.wsgi_app = stack  # type: ignore[method-assign]
    app.extensions[openapi.MOUNTED_KEY] = {receive.PATH: (receive.receive_operation, {"POST"})}
    if runtime.settings.secret is None:
        log.warning("gateway.secret is not set: unsigned webhooks are accepted on /api/webhooks/receive "
                    "unless a receive secret is set through the API")
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(RequestEntityTooLarge)
    def body_too_large(error: RequestEntityTooLarge) -> Response:
        return too_large(app.config["MAX_CONTENT_LENGTH"]).response()

    @app.errorhandler(HTTPException)
    def http_exception(error: HTTPException) -> Response:
        return http_error(error.code or 500, error.description or error.name).response()

    @app.errorhandler(redis.RedisError)
    def storage_down(error: redis.RedisError) -> Response:
        return storage_error(error).response()

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        # A bug, not the caller's fault: log it with its traceback, answer without one.
        log.exception("unhandled error")
        return internal_error().response()
