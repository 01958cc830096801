"""The delivery engine driven in the test process (publish, drain the queue, hand drain jobs
to a drainer), and what the engine's Redis structures say."""

from __future__ import annotations

import threading
import time
from typing import Any, Self

from rq.job import Job
from rq.serializers import JSONSerializer

from gateway.delivery import attempt_store, delivery_log
from gateway.delivery.drainer import Drainer
from gateway.events import Event
from gateway.publish.publisher import publish
from support.load import wait_under_load
from support.plugins import PlainSinkPlugin


def plain_runtime(make_runtime: Any, url: str, *, gateway: dict[str, Any] | None = None,
                  delivery: dict[str, Any] | None = None, **sink: Any) -> Any:
    """A runtime with one ``plain`` sink, ``hook``, for every event at ``url`` (``sink``: its
    other options), private networks allowed and no retry jitter: the usual arrangement of
    the delivery tests that drive the engine in the test process."""
    config: dict[str, Any] = {
        "delivery": {"allow_private_networks": True, "retry_jitter": 0, **(delivery or {})},
        "sinks": [{"name": "hook", "type": "plain", "url": url, "events": ["*"], **sink}]}
    if gateway:
        config["gateway"] = gateway
    return make_runtime(config, plugins=[PlainSinkPlugin()])


def publish_tickets(runtime: Any, n: int = 1) -> list[str]:
    """Publish ``n`` ticket.created events through the normal path; their delivery ids."""
    ids: list[str] = []
    for i in range(n):
        ids.extend(publish(runtime, Event.new("ticket.created", {"ticket": {"id": f"t{i}"}})).delivery_ids)
    return ids


def shown(runtime: Any, delivery_id: str) -> dict[str, Any]:
    """The delivery as the API shows it (it must exist)."""
    found = delivery_log.get_delivery(runtime, delivery_id)
    assert found is not None, delivery_id
    return found


def drain_queued(runtime: Any, concurrency: int = 4) -> int:
    """Run, in this process, the drain jobs waiting on the rq queue (what a worker would do
    with them) until the drainers release; returns how many were run. For tests that need
    deliveries attempted but not a worker process (no retries: they need rq's scheduler)."""
    drainer = Drainer(runtime, concurrency)
    ran = 0
    try:
        while True:
            raw_id = runtime.redis.lpop(runtime.queue.key)
            if raw_id is None:
                return ran
            job_id = raw_id.decode()
            job = Job.fetch(job_id, connection=runtime.redis, serializer=JSONSerializer)
            if job.func_name == "gateway.delivery.jobs.drain":
                drainer.run_inline(*job.args)
                ran += 1
            job.delete()
    finally:
        drainer.stop()


class WakeupRunner:
    """Hands the rq drain jobs on the queue to ``drainer`` as a worker would (no sweeper,
    no scheduler), from a thread: for tests of the wake / release protocol itself."""

    def __init__(self, runtime: Any, drainer: Any) -> None:
        self.runtime = runtime
        self.drainer = drainer
        self.wakeups = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            popped = self.runtime.redis.blpop([self.runtime.queue.key], timeout=0.2)
            if popped is None:
                continue
            job = Job.fetch(popped[1].decode(), connection=self.runtime.redis, serializer=JSONSerializer)
            if job.func_name == "gateway.delivery.jobs.drain":
                self.wakeups += 1
                self.drainer.start(*job.args)
            job.delete()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.drainer.stop()


# -- what the engine's Redis says ----------------------------------------------------------------


def engine_state(redis: Any, sink: str = "rec") -> dict[str, Any]:
    """What the delivery engine's Redis structures say about ``sink`` (for failure messages)."""
    statuses: dict[str, int] = {}
    for key in redis.scan_iter("gw:delivery:dlv_*"):
        if not key.endswith(b":attempts"):
            status = (redis.hget(key, "status") or b"?").decode()
            statuses[status] = statuses.get(status, 0) + 1
    return {
        "deliveries": statuses,
        "ready": redis.llen(f"gw:ready:{sink}"),
        "inflight": redis.zrange(f"gw:inflight:{sink}", 0, -1, withscores=True)[:5],
        "drainers": redis.zrange(f"gw:drainers:{sink}", 0, -1, withscores=True),
        "sink_state": redis.hgetall(f"gw:sink:{sink}:state"),
        "rq_queue": redis.llen("rq:queue:gateway"),
        "rq_workers": sorted(k.decode() for k in redis.smembers("rq:workers")),
        "now_ms": int(time.time() * 1000),
    }


def delivery_statuses(redis: Any) -> list[bytes]:
    """The status of every delivery in the delivery log."""
    keys = [k for k in redis.scan_iter("gw:delivery:dlv_*") if not k.endswith(b":attempts")]
    return [redis.hget(key, "status") for key in keys]


def wait_until_logged_delivered(redis: Any, count: int, timeout: float = 120.0) -> None:
    """Wait until the delivery log holds ``count`` deliveries, all ``delivered``. A receiver
    sees a request before the worker records its answer (and a killed worker's attempt is
    recorded only once it is made again), so this comes after the receiver's view."""
    wait_under_load(
        lambda: sorted(set(delivery_statuses(redis))) == [b"delivered"],
        "every delivery logged as delivered",
        timeout=timeout,
    )
    assert len(delivery_statuses(redis)) == count


def stored_attempts(redis: Any, attempts_key: str | bytes) -> list[dict[str, Any]]:
    """The attempt records kept under ``attempts_key`` (``<prefix>delivery:<id>:attempts``)
    read as the delivery log reads them (:mod:`gateway.delivery.attempt_store`: with the
    delivery's hash and its event), for tests that look at Redis directly."""
    key = attempts_key.decode() if isinstance(attempts_key, bytes) else attempts_key
    delivery_key = key.removesuffix(":attempts")
    fields = {k.decode(): v.decode() for k, v in redis.hgetall(delivery_key).items()}
    prefix = delivery_key[:delivery_key.rindex("delivery:")]
    event_json = redis.get(f"{prefix}event:{fields.get('event_id', '')}")
    return [attempt_store.unpack(raw, fields, event_json) for raw in redis.lrange(key, 0, -1)]
