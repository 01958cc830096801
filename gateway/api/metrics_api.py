"""Builtin plugin: ``GET /metrics`` for Prometheus, and the hooks that feed it.

Requests are counted from this blueprint's app-wide ``after_request`` (so every
endpoint, plugins' included, is counted without touching their code); events and
delivery attempts through the ``event_published`` and ``delivery_attempted`` hooks.
Recording never raises: a metrics bug must not fail a request or a delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Response, current_app, g, request

from gateway import metrics
from gateway.events import Event
from gateway.hookspecs import hookimpl

bp = Blueprint("metrics", __name__)
UNMATCHED = "unmatched"


@bp.before_app_request
def _start_timer() -> None:
    # Shared with the request log line (gateway.logs), which reads the same value.
    if "gateway_started" not in g:
        g.gateway_started = time.perf_counter()


@bp.after_app_request
def _count_request(response: Response) -> Response:
    started = g.get("gateway_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    rule = request.url_rule
    endpoint = rule.rule if rule is not None else UNMATCHED
    method, status = request.method, response.status_code
    metrics.safely("request", lambda: metrics.get().observe_request(endpoint, method, status, seconds))
    return response


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus metrics (text exposition format; OpenMetrics when the scraper asks).
    ---
    get:
      tags: [operations]
      summary: Prometheus metrics
      description: Counters and histograms merged across every gunicorn and worker process on this
        machine, plus backlog gauges read from Redis at scrape time.
      security: []
      responses:
        200:
          description: Metrics in the Prometheus text format.
          content:
            text/plain:
              schema: {type: string}
    """
    body, content_type = metrics.render(current_app.extensions["gateway"], request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@hookimpl
def register_blueprints(register: Callable[[Blueprint], None]) -> None:
    register(bp)


@hookimpl
def event_published(event: Event, sinks: Sequence[str]) -> None:
    metrics.safely("event", lambda: metrics.get().observe_event(event))


@hookimpl
def delivery_attempted(attempt: dict[str, Any]) -> None:
    metrics.safely("delivery attempt", lambda: metrics.get().observe_attempt(attempt))
