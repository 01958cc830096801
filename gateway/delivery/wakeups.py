"""Every rq job the gateway enqueues, and when: drain wake-ups now, scheduled retries and
circuit wake-ups later. The jobs themselves are in :mod:`gateway.delivery.jobs`.

rq jobs are wake-ups here, never one job per delivery (rq's bookkeeping costs ~50 Redis
round trips a job): the deliveries are already durable in Redis when a job is enqueued, so
a job that is lost (a process dying between the write and the enqueue) costs a delay, never
a delivery: the sweeper re-wakes sinks whose ready list has no live drainer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import redis

from gateway.storage.scripts import RequeueResult

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

JOBS_MODULE = "gateway.delivery.jobs"
DRAIN_JOB = f"{JOBS_MODULE}.drain"
REQUEUE_JOB = f"{JOBS_MODULE}.requeue"
WAKE_JOB = f"{JOBS_MODULE}.wake"
FAILURE_TTL_S = 86400


def rq_schedule_time(moment: datetime) -> datetime:
    """``moment`` rounded UP to a whole second: rq's scheduled-job registry keeps whole
    seconds (truncated), so an unrounded time could fire up to a second early, before a
    Retry-After the destination asked for."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def enqueue_drains(runtime: Runtime, drains: Iterable[tuple[str, str]]) -> None:
    """Enqueue one rq drain job per (sink, drainer token) the scripts reserved, in one round
    trip. A failure here loses nothing: the reserved lease lapses and the sweeper re-wakes."""
    queue = runtime.queue
    try:
        with runtime.redis.pipeline(transaction=False) as pipe:
            for sink, token in drains:
                queue.enqueue_call(DRAIN_JOB, args=(sink, token), job_id=token, pipeline=pipe,
                                   result_ttl=0, failure_ttl=FAILURE_TTL_S, timeout=-1)
            pipe.execute()
    except redis.RedisError:
        pass


def requeue(runtime: Runtime, mode: str, deliveries: Sequence[tuple[str, str]] = (),
            wake_sinks: Iterable[str] = (), keep_order: bool = False) -> RequeueResult:
    """Put deliveries back on their ready lists (``mode`` "retry" or "replay", see
    requeue.lua; ``keep_order``: replayed ordered deliveries join the end of their ticket's
    queue) and wake drainers for their sinks and ``wake_sinks``."""
    result = runtime.scripts.requeue(mode, deliveries, wake_sinks, keep_order)
    if result.wakes:
        enqueue_drains(runtime, result.wakes)
    return result


def schedule_retry(runtime: Runtime, pipe: Pipeline, delivery_id: str, attempt_no: int, when: datetime) -> None:
    """Queue on ``pipe`` (a MULTI with the attempt's record) the rq job that requeues a
    retrying delivery at ``when``: a retrying delivery always has its retry scheduled."""
    runtime.queue.enqueue_at(rq_schedule_time(when), REQUEUE_JOB, delivery_id, str(attempt_no),
                             job_id=f"retry-{delivery_id}-{attempt_no}", result_ttl=0, failure_ttl=FAILURE_TTL_S,
                             pipeline=pipe)


def schedule_wake(runtime: Runtime, sink: str, at_ms: int) -> None:
    """Have rq's scheduler wake ``sink`` when its circuit's cool-down ends (the probe)."""
    when = rq_schedule_time(datetime.fromtimestamp(at_ms / 1000, tz=UTC))
    runtime.queue.enqueue_at(when, WAKE_JOB, sink, job_id=f"wake-{uuid.uuid4().hex}", result_ttl=0,
                             failure_ttl=FAILURE_TTL_S)
