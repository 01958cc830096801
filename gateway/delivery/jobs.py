"""The rq jobs of the delivery engine. All are small and return quickly.

* ``drain(sink, token)``: a wake-up; hands the drainer token to this process's drainer.
* ``requeue(delivery_id, attempts)``: a scheduled retry firing (rq's scheduler enqueues it
  at ``next_attempt_at``); puts the delivery back on its ready list unless it was overtaken.
* ``wake(sink)``: a circuit's cool-down ended; start a drainer so one probe goes out.

``gateway worker`` runs them with its engine (:data:`current_engine`, set by the worker
around each job). Run by any other rq worker (``rq worker`` on the same queue), the jobs
build a runtime from the configuration (``GATEWAY_CONFIG``) once for that process, and a
drain job drains in place until the sink is idle. Where they are enqueued:
:mod:`gateway.delivery.wakeups`.
"""

from __future__ import annotations

import contextvars
import functools

from gateway.delivery import wakeups
from gateway.delivery.drainer import Drainer
from gateway.runtime import Runtime

current_engine: contextvars.ContextVar[Drainer | None] = contextvars.ContextVar("gateway_engine", default=None)
"""The drainer of the ``gateway worker`` running the current job (None under another worker)."""


@functools.cache
def _standalone_runtime() -> Runtime:
    # Only for jobs run by a worker that is not `gateway worker`: one runtime for the process.
    return Runtime.from_config(start_embedded=False)


def _runtime() -> Runtime:
    engine = current_engine.get()
    return engine.runtime if engine is not None else _standalone_runtime()


def drain(sink: str, token: str) -> None:
    """Work ``sink``'s ready list under the drainer lease ``token``."""
    engine = current_engine.get()
    if engine is not None:
        engine.start(sink, token)
        return
    runtime = _standalone_runtime()
    Drainer(runtime, runtime.settings.delivery.concurrency).run_inline(sink, token)


def requeue(delivery_id: str, attempts: str) -> str:
    """Put a retrying delivery back on its sink's ready list (if it still is at ``attempts``
    attempts: a replay or a newer retry overtakes this one) and wake a drainer."""
    result = wakeups.requeue(_runtime(), "retry", [(delivery_id, str(attempts))])
    return result.outcomes.get(delivery_id, "missing")


def wake(sink: str) -> None:
    """Start a drainer for ``sink`` if it has ready work and none is live (circuit probe)."""
    wakeups.requeue(_runtime(), "retry", wake_sinks=[sink])
