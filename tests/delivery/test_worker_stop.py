"""A ``gateway worker`` asked to stop does not wait on rq's parts that used to make it a
second or two late (a deploy or a restart waits for every worker): its scheduler (a
forked child) ends its wait between passes, and its pubsub thread ends on the reply to
UNSUBSCRIBE."""

from __future__ import annotations

import os
import signal
from typing import Any

import redis as redis_lib
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.delivery.worker import GatewayScheduler, build_worker
from gateway.testing import wait_until


def test_a_stopped_scheduler_ends_its_wait_and_releases_its_lock(redis_url: str,
                                                                 redis_client: redis_lib.Redis) -> None:
    queue = Queue("scheduler-stop", connection=redis_client, serializer=JSONSerializer)
    # An hour between passes: a scheduler that slept it out would outlast the join below.
    scheduler = GatewayScheduler([queue], connection=redis_client, redis_url=redis_url, interval=3600)
    scheduler.acquire_locks()
    assert scheduler.acquired_locks == {queue.name}
    process = scheduler.start()  # forked, as the worker starts it
    try:
        # rq installs the stop handlers before it registers the scheduler in Redis.
        wait_until(lambda: redis_client.exists(scheduler.key), "the scheduler to register")
        assert process.pid is not None
        os.kill(process.pid, signal.SIGTERM)
        process.join(60)
        assert process.exitcode == 0
    finally:
        if process.is_alive():
            process.kill()
            process.join()
    # Gone from Redis, lock released: another worker's scheduler can take over at once.
    assert not redis_client.exists(scheduler.key)
    assert not redis_client.exists(scheduler.get_locking_key(queue.name))


def test_a_worker_that_unsubscribes_ends_its_pubsub_thread(make_runtime: Any, redis_client: redis_lib.Redis) -> None:
    worker = build_worker(make_runtime())
    # Whether the thread reads the reply to UNSUBSCRIBE before it is told to stop is a race;
    # in rq's order the thread that won it waited a minute for a new subscription, and the
    # join gave up on it after a second: so several rounds.
    for _ in range(10):
        worker.subscribe()
        wait_until(lambda: redis_client.pubsub_numsub(worker.pubsub_channel_name)[0][1] == 1,
                   "the worker's subscription")
        worker.unsubscribe()
        assert worker.pubsub_thread is not None and not worker.pubsub_thread.is_alive()
