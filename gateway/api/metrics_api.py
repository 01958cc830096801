"""Builtin plugin: ``GET /metrics`` for Prometheus, and the hooks that feed it.

Requests are counted from this blueprint's app-wide ``after_request`` (so every
endpoint, plugins' included, is counted without touching their code); events and
delivery attempts through the ``event_published`` and ``delivery_attempted`` hooks.
Recording never raises: a metrics bug must not fail a request or a delivery.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import click
from flask import Blueprint, Response, current_app, g, request

from gateway import metrics
from gateway.api.auth import bearer_token
from gateway.cli import config_option
from gateway.errors import ApiError
from gateway.events import Event
from gateway.hookspecs import hookimpl

log = logging.getLogger("gateway.metrics")
bp = Blueprint("metrics", __name__)
UNMATCHED = "unmatched"
# Label values come from this fixed set: a client inventing methods must not invent series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
    count_request(endpoint, request.method, response.status_code, seconds)
    return response


def count_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one answered request (the app-wide hook above, and the receive fast path)."""
    method = method if method in KNOWN_METHODS else "other"
    metrics.safely("request", lambda: metrics.get().observe_request(endpoint, method, status, seconds))


@bp.get("/metrics")
def scrape() -> Response:
    """Prometheus metrics (text exposition format; OpenMetrics when the scraper asks).
    ---
    get:
      tags: [operations]
      summary: Prometheus metrics
      description: >-
        Counters and histograms merged across every gunicorn and worker process on this
        machine, plus backlog gauges read from Redis at scrape time. When `gateway.metrics_token`
        is set, send it as `Authorization: Bearer <metrics_token>` (Prometheus' `authorization`
        scrape option).
      security: []
      responses:
        200:
          description: Metrics in the Prometheus text format.
          content:
            text/plain:
              schema: {type: string}
        401: Unauthorized
        403: Forbidden
        503:
          description: The metrics cannot be read right now (Redis being down is not a reason).
          content:
            application/json:
              schema: ErrorSchema
    """
    runtime = current_app.extensions["gateway"]
    _check_metrics_token(runtime.settings.metrics_token)
    try:
        body, content_type = metrics.render(runtime, request.headers.get("Accept"))
    except Exception:  # noqa: BLE001 - e.g. a damaged file in the metrics directory
        log.exception("metrics: the scrape failed")
        raise ApiError(503, "metrics_unavailable", "The metrics cannot be read right now; see the server "
                       "log.", headers={"Retry-After": "15"}) from None
    return Response(body, content_type=content_type)


@hookimpl
def register_blueprints(register: Callable[[Blueprint], None]) -> None:
    register(bp)


@click.command("metrics-server")
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9464, show_default=True,
              help="Port to listen on.")
def metrics_server_command(host: str, port: int) -> None:
    """Serve the metrics of this machine's worker processes for Prometheus.

    For machines that run `gateway worker` without `gateway web` (whose /metrics already
    includes the workers next to it). Reads PROMETHEUS_MULTIPROC_DIR, else
    <data_dir>/metrics of the configuration: where the workers write. Backlog gauges
    (queue depth, circuits) come from any web process's /metrics: they are read from Redis.
    """
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    from gateway.cli import cli_settings

    directory = os.environ.get(metrics.MULTIPROC_ENV) or str(
        metrics.default_multiprocess_dir(cli_settings().data_dir).resolve())
    if not os.path.isdir(directory):
        raise click.ClickException(f"No metrics directory {directory}: start a worker on this machine first "
                                   f"(or set {metrics.MULTIPROC_ENV} to the directory the workers use).")
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)
    server, thread = start_http_server(port, host, registry)
    click.echo(f"Serving worker metrics from {directory} on http://{host}:{port}/metrics", err=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(metrics_server_command)


def _check_metrics_token(expected: str | None) -> None:
    """With a metrics_token configured: 401 without a bearer token, 403 with another one."""
    if expected is None:
        return
    given = bearer_token()
    if not given:
        raise ApiError(401, "unauthorized", "This gateway's metrics need its metrics token: send "
                       "'Authorization: Bearer <metrics_token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway-metrics"'})
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "The metrics token is not valid.")


@hookimpl
def event_published(event: Event, sinks: Sequence[str]) -> None:
    metrics.safely("event", lambda: metrics.get().observe_event(event))


@hookimpl
def delivery_attempted(attempt: dict[str, Any]) -> None:
    metrics.safely("delivery attempt", lambda: metrics.get().observe_attempt(attempt))
