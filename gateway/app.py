"""create_app(): the Flask application factory.

All per-process state lives in ``app.extensions["gateway"]`` (a :class:`Runtime`), built
once here: schemas, config, subscriber tables, the Redis pool and the Lua script are ready
before the first request.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.api import receive_fast
from gateway.errors import ApiError, internal_error, redis_unavailable
from gateway.runtime import Runtime

log = logging.getLogger("gateway.app")

HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type"}


def create_app(runtime: Runtime | None = None, config_path: str | os.PathLike[str] | None = None) -> Flask:
    """Build the web application around ``runtime`` (or one loaded from config)."""
    runtime = runtime or Runtime.from_config(config_path)
    app = Flask("gateway")
    app.extensions["gateway"] = runtime
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for blueprint in runtime.plugins.blueprints:
        app.register_blueprint(blueprint)
    _register_error_handlers(app)
    receive_fast.install(app)
    if runtime.settings.trusted_proxies:
        # Outermost, so every layer (the receive fast path's access line included) sees the
        # client's address, not the proxy's.
        hops = runtime.settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    if runtime.settings.secret is None:
        log.warning("gateway.secret is not set: unsigned webhooks are accepted on /api/webhooks/receive")
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return ApiError(413, "payload_too_large", f"The body is larger than the limit of {limit} bytes.").response()

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        return ApiError(code, HTTP_CODES.get(code, f"http_{code}"), error.description or error.name).response()

    @app.errorhandler(redis.RedisError)
    def storage_down(error: redis.RedisError) -> Response:
        log.warning("redis unavailable: %s", type(error).__name__)
        return redis_unavailable().response()

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Any:
        # A bug, not the caller's fault: log it with its traceback, answer without one.
        log.exception("unhandled error")
        return internal_error().response()
