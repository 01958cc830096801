"""The sweeper: a thread in every worker process that keeps the protocol live.

Every ~2 s, for every sink that ever had a delivery (sweep.lua, one round trip):

* in-flight leases that expired (a killed or stuck worker) go back to the FRONT of the
  ready list, so an interrupted delivery is attempted again within timeout + 15 s + 2 s;
* a sink with ready work and no live drainer (a lost wake-up, a drainer that died), or
  with a backlog bigger than its live drainers should drain alone, gets a drainer here
  (when this process is not draining it already): so idle processes join busy ones even
  when every wake-up job went to one process;
* deliveries of a sink that is no longer configured are failed with a clear error (they
  stay replayable once the sink is back); those of a sink deleted through the API are
  cancelled (reason ``sink_deleted``);
* failures counted for a sink's ``delivery.failed`` summary in a window that has ended are
  published (through :attr:`gateway.runtime.Runtime.reporter`).

Several processes sweeping at once is harmless: each pass is one atomic script.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from gateway.storage.scripts import ClaimedDelivery, as_text

if TYPE_CHECKING:  # pragma: no cover
    from gateway.delivery.drainer import Drainer

log = logging.getLogger("gateway.delivery.sweeper")

INTERVAL_S = 2.0
UNCONFIGURED_BATCH = 100


class Sweeper:
    """Runs :meth:`sweep` every ``interval`` seconds in a daemon thread."""

    def __init__(self, drainer: Drainer, interval: float = INTERVAL_S) -> None:
        self.drainer = drainer
        self.runtime = drainer.runtime
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - Redis down (or a bug): try again next round
                log.warning("sweep failed: %s", type(exc).__name__)

    def sweep(self) -> int:
        """One pass; returns how many expired in-flight leases were put back."""
        configured = list(self.runtime.refresh().configs)
        swept = self.runtime.scripts.sweep(configured, self.drainer.draining())
        for sink, token in swept.starts:
            self.drainer.start(sink, token)
        if swept.recovered:
            log.warning("put %d interrupted deliveries back on their ready lists", swept.recovered)
        for sink in swept.unconfigured:
            self._fail_unconfigured(sink)
        self.runtime.reporter.flush_failure_summaries()
        return swept.recovered

    def _fail_unconfigured(self, sink: str) -> None:
        if sink in self.runtime.refresh().configs:
            return  # created through the API since this pass began: its drainer takes the work
        redis = self.runtime.redis
        keys = self.runtime.keys
        ids = redis.lpop(keys.ready(sink), UNCONFIGURED_BATCH) or []
        for raw_id in ids:
            delivery_id = as_text(raw_id)
            fields = {as_text(k): as_text(v) for k, v in redis.hgetall(keys.delivery(delivery_id)).items()}
            if not fields or fields.get("status") not in ("pending", "retrying"):
                continue
            # Recorded like an attempt, so the log says why it failed.
            self.drainer.runner.run(ClaimedDelivery(delivery_id, fields, None))
        if ids and sink not in self.runtime.integrations.deleted:
            log.warning("failed %d deliveries of sink %s, which is not configured", len(ids), sink)
