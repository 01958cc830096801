"""``gateway metrics-server``: the worker processes' metrics, for machines without ``gateway web``."""

from __future__ import annotations

import os

import click

from gateway import metrics
from gateway.cli.context import cli_settings, config_option


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
