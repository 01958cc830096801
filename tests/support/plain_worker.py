"""``python -m support.plain_worker --config F [--concurrency N] [--burst]``: a ``gateway
worker`` with the ``plain`` sink type of :mod:`support.plugins` registered (start it with
:func:`support.processes.start_worker`).

The sink type comes from :mod:`support.plugins`, not from this module, which runs as
``__main__``: the worker must find the plugin's classes under their module's own name.
"""

from __future__ import annotations

import argparse
import logging

from gateway.delivery.worker import run_worker
from gateway.publish.plugin_services import provide
from gateway.runtime import Runtime
from support.plugins import PlainSinkPlugin


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--burst", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = provide(Runtime.from_config(options.config, extra_plugins=[PlainSinkPlugin()]))
    run_worker(runtime, options.concurrency, options.burst)


if __name__ == "__main__":
    main()
