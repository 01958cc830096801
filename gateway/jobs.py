"""The rq jobs of the delivery engine. All are small and return quickly.

* ``drain(sink, token)``: a wake-up; hands the drainer token to this process's drainer.
* ``requeue(delivery_id, attempts)``: a scheduled retry firing (rq's scheduler enqueues it
  at ``next_attempt_at``); puts the delivery back on its ready list unless it was overtaken.
* ``wake(sink)``: a circuit's cool-down ended; start a drainer so one probe goes out.

A ``gateway worker`` process installs its engine with :func:`install`. Run by any other rq
worker (``rq worker`` on the same queue), the jobs build a runtime from the configuration
(``GATEWAY_CONFIG``) and a drain job drains in place until the sink is idle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from gateway.scripts import scripts_for

if TYPE_CHECKING:  # pragma: no cover
    from gateway.drainer import Drainer
    from gateway.runtime import Runtime

_engine: Drainer | None = None
_fallback_runtime: Runtime | None = None
_lock = threading.Lock()


def install(drainer: Drainer | None) -> None:
    """Make ``drainer`` the one this process's jobs use (None to uninstall)."""
    global _engine
    _engine = drainer


def _runtime() -> Runtime:
    global _fallback_runtime
    if _engine is not None:
        return _engine.runtime
    with _lock:
        if _fallback_runtime is None:
            from gateway.runtime import Runtime

            _fallback_runtime = Runtime.from_config(start_embedded=False)
        return _fallback_runtime


def drain(sink: str, token: str) -> None:
    """Work ``sink``'s ready list under the drainer lease ``token``."""
    if _engine is not None:
        _engine.start(sink, token)
        return
    from gateway.drainer import Drainer

    runtime = _runtime()
    Drainer(runtime, runtime.settings.delivery["concurrency"]).run_inline(sink, token)


def requeue(delivery_id: str, attempts: str) -> str:
    """Put a retrying delivery back on its sink's ready list (if it still is at ``attempts``
    attempts: a replay or a newer retry overtakes this one) and wake a drainer."""
    result = scripts_for(_runtime()).requeue("retry", [(delivery_id, str(attempts))])
    return result.outcomes.get(delivery_id, "missing")


def wake(sink: str) -> None:
    """Start a drainer for ``sink`` if it has ready work and none is live (circuit probe)."""
    scripts_for(_runtime()).requeue("retry", wake_sinks=[sink])
