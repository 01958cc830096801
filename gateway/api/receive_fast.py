"""The receive endpoint's fast path: a WSGI layer in front of Flask for ticket creates.

A served ticket create spent most of its CPU in Flask's request machinery (request and
response objects, context locals, routing, hooks), not in the gateway's own work. This
layer answers ``POST /api/webhooks/receive`` itself when the request is well formed, with
exactly the same steps as the view (:func:`gateway.api.receive.accept` and
:func:`~gateway.api.receive.create_ticket`), the same answer, access-log line and metrics.

Everything else goes to Flask untouched, and so does any receive that is not a plain
success: no Content-Length (chunked), a body over the limit, another media type, or any
check that fails (signature, JSON, schema, Idempotency-Key). Flask then answers it with its
stable error, from the body this layer already read; nothing is stored before every check
passed, so handing over is always safe. Only what happens at or after the write is answered
here: 201 / 200 (replay), 503 when Redis is down, 500 for a bug.

The layer stands aside (everything goes to Flask) when something else hooks into the
receive request: an app-wide ``before_request`` / ``after_request`` / ``teardown_request``
function other than the gateway's own timers, access log and metrics (a plugin's IP
allow-list, say), or another view on the receive URL.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis
from werkzeug.datastructures import EnvironHeaders

from gateway import logs
from gateway.api import metrics_api
from gateway.api import receive as view
from gateway.errors import ApiError, internal_error, redis_unavailable

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask

log = logging.getLogger("gateway.app")

PATH = "/api/webhooks/receive"
ENDPOINT = "receive.receive"
# The gateway's own app-wide hooks: what they do for a request, this layer does too.
OWN_HOOKS = frozenset({(logs.__name__, "_start_timer"), (logs.__name__, "_log_request"),
                       (metrics_api.__name__, "_start_timer"), (metrics_api.__name__, "_count_request")})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FastReceive:
    """WSGI middleware: ``app.wsgi_app = FastReceive(app, app.wsgi_app)``."""

    def __init__(self, app: Flask, wsgi_app: WsgiApp) -> None:
        self.app = app
        self.next = wsgi_app
        self.runtime = app.extensions["gateway"]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST" or not self._alone():
            return self.next(environ, start_response)
        started = time.perf_counter()
        length = _content_length(environ)
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if length is None or (limit is not None and length > limit) \
                or not view.is_json(environ.get("CONTENT_TYPE")):
            return self.next(environ, start_response)
        body = environ["wsgi.input"].read(length)
        settings = self.runtime.settings
        try:
            if len(body) != length:  # the client went away mid-body: let Flask say so
                raise ApiError(400, "bad_request", "short body")
            data, key = view.accept(body, EnvironHeaders(environ), settings.secret, settings.signature_tolerance)
        except Exception:  # noqa: BLE001 - an ApiError, or a bug: Flask answers (and logs) either
            environ["wsgi.input"] = io.BytesIO(body)
            return self.next(environ, start_response)
        try:
            published = view.create_ticket(self.runtime, data, key)
        except redis.RedisError as exc:
            log.warning("redis unavailable: %s", type(exc).__name__)
            return self._error(environ, start_response, redis_unavailable(), started)
        except Exception:  # noqa: BLE001 - a bug: logged with its traceback, answered without
            log.exception("unhandled error")
            return self._error(environ, start_response, internal_error(), started)
        headers = [("Idempotent-Replayed", "true")] if published.replayed else \
            [("Location", f"/api/tickets/{published.ticket['id']}")]
        status = 200 if published.replayed else 201
        return self._answer(environ, start_response, status, {"ticket": published.ticket}, headers, started)

    def _alone(self) -> bool:
        """True when nothing but the gateway's own hooks and view would see a receive."""
        app = self.app
        for registry in (app.before_request_funcs, app.after_request_funcs):
            for hook in registry.get(None, ()):
                if (hook.__module__, hook.__name__) not in OWN_HOOKS and not self._idle_csrf(hook):
                    return False
            if registry.get("receive"):
                return False
        if app.teardown_request_funcs.get(None) or app.teardown_request_funcs.get("receive"):
            return False
        return app.view_functions.get(ENDPOINT) is view.receive

    def _idle_csrf(self, hook: Callable[..., Any]) -> bool:
        # Flask-WTF's app-wide check, which the admin console turns off (it checks its own
        # forms): with WTF_CSRF_CHECK_DEFAULT false it returns without looking at anything.
        config = self.app.config
        return (hook.__module__, hook.__name__) == ("flask_wtf.csrf", "csrf_protect") and not (
            config.get("WTF_CSRF_ENABLED", True) and config.get("WTF_CSRF_CHECK_DEFAULT", True))

    def _error(self, environ: dict[str, Any], start_response: StartResponse, error: ApiError,
               started: float) -> Iterable[bytes]:
        return self._answer(environ, start_response, error.status, error.body(), list(error.headers.items()),
                            started)

    def _answer(self, environ: dict[str, Any], start_response: StartResponse, status: int, doc: Any,
                headers: list[tuple[str, str]], started: float) -> Iterable[bytes]:
        # As Flask's jsonify writes it (compact, the app's ensure_ascii, a final newline).
        ensure_ascii = getattr(self.app.json, "ensure_ascii", True)
        payload = (json.dumps(doc, separators=(",", ":"), ensure_ascii=ensure_ascii) + "\n").encode("utf-8")
        start_response(f"{status} {_REASONS[status]}", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *headers])
        metrics_api.count_request(PATH, "POST", status, time.perf_counter() - started)
        logs.log_access("POST", PATH, status, started, environ.get("REMOTE_ADDR"), safe=True)
        return [payload]


_REASONS = {200: "OK", 201: "CREATED", 500: "INTERNAL SERVER ERROR", 503: "SERVICE UNAVAILABLE"}


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
    if not raw or not raw.isdigit():
        return None
    return int(raw)


def install(app: Flask) -> None:
    """Put the fast path in front of ``app``'s WSGI callable (done by create_app)."""
    app.wsgi_app = FastReceive(app, app.wsgi_app)  # type: ignore[method-assign]
