"""One WSGI middleware around the whole web application: it times every request, writes its
access line and counts it in the request metrics, whichever application answered it (the
Flask app, the receive endpoint, a plugin's blueprint).

The metrics label a request by its route (``/api/deliveries/<delivery_id>``), never by its
path, so clients cannot invent series: the application that matched the request puts the
route in ``environ[ROUTE_KEY]`` (the Flask app does it for all its rules, see
:func:`gateway.web.app.create_app`); a request nothing matched is ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gateway import logs
from gateway.metrics import safely

if TYPE_CHECKING:  # pragma: no cover
    from gateway.metrics import Metrics

ROUTE_KEY = "gateway.route"
UNMATCHED = "unmatched"
# Label values come from this fixed set: a client inventing methods must not invent series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestInstrumentation:
    """WSGI middleware: ``RequestInstrumentation(app, metrics)``."""

    def __init__(self, app: WsgiApp, metrics: Metrics, fixed_routes: Iterable[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        # Routes whose path is fixed text (no client-chosen part): their access line can skip
        # the log filter's redaction pass.
        self.fixed_routes = frozenset(fixed_routes)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: list[int] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(int(status[:3]))
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start)
        except BaseException:
            self._record(environ, 500, started)
            raise
        # Every response the gateway makes is produced before it is returned (JSON, rendered
        # pages), so the time to here is the time to answer.
        self._record(environ, seen[-1] if seen else 500, started)
        return result

    def _record(self, environ: dict[str, Any], status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "")
        route = environ.get(ROUTE_KEY, UNMATCHED)
        label = method if method in KNOWN_METHODS else "other"
        safely("request", lambda: self.metrics.observe_request(route, label, status, seconds))
        # The path without the query string, where callers sometimes put tokens.
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        logs.log_access(label, path, status, started, environ.get("REMOTE_ADDR"),
                        safe=route in self.fixed_routes and path == route)
