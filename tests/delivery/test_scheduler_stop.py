"""A worker's rq scheduler (a forked child of ``gateway worker``) stops as soon as it is
asked to, releasing its lock, instead of first sleeping out the rest of its interval: the
worker's own stop waits for it, so a deploy or a restart waited too."""

from __future__ import annotations

import os
import signal

import redis as redis_lib
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.delivery.worker import GatewayScheduler
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
