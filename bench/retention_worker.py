"""``gateway worker`` with a retention of a few seconds (``python -m bench.retention_worker
--config PATH --retention-s S``), for the retention scenario of :mod:`bench.growth`.

The configuration refuses a ``retention_days`` under 0.01 (14.4 minutes), rightly for an
operator; a bench run cannot wait ten times that. So the settings are loaded and checked as
``gateway worker`` loads them, and only the retention is replaced before the worker starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gateway.config import load_config
from gateway.delivery.worker import run_worker
from gateway.metrics import ensure_multiprocess_dir
from gateway.plugins import load_plugins
from gateway.publish import plugin_services
from gateway.runtime import Runtime


def short_retention_runtime(config: str, retention_s: float) -> Runtime:
    """The runtime of ``config`` with ``retention_days`` set to ``retention_s`` seconds."""
    plugins = load_plugins()
    settings = dataclasses.replace(load_config(config, plugins), retention_days=retention_s / 86400)
    return Runtime.from_settings(settings, plugins, start_embedded=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--retention-s", type=float, required=True)
    args = parser.parse_args(argv)
    runtime = plugin_services.provide(short_retention_runtime(args.config, args.retention_s))
    ensure_multiprocess_dir(runtime.settings.data_dir)
    run_worker(runtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
