"""``gateway worker``: run a delivery worker in this process (see :mod:`gateway.delivery.worker`)."""

from __future__ import annotations

import logging

import click

from gateway.cli.context import cli_runtime, config_option
from gateway.delivery.worker import run_worker
from gateway.metrics import ensure_multiprocess_dir


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(1, 1024), default=None,
              help="Deliveries in flight at once in this process (default: delivery.concurrency).")
@click.option("--burst", is_flag=True, help="Deliver everything that is ready now, then exit.")
@click.option("--name", default=None, help="Worker name (default: rq's, host + random).")
@config_option
def worker_command(concurrency: int | None, burst: bool, name: str | None) -> None:
    """Run a delivery worker (rq, no fork per job, many deliveries in flight)."""
    runtime = cli_runtime()
    # Delivery metrics go to this machine's shared directory, where /metrics or
    # `gateway metrics-server` read them.
    ensure_multiprocess_dir(runtime.settings.data_dir)
    run_worker(runtime, concurrency, burst, name, logging.getLevelName(logging.getLogger().level))
