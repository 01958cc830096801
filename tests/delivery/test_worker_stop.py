"""A ``gateway worker`` asked to stop does not wait on the parts that used to make it a
second or two late (a deploy or a restart waits for every worker): rq's scheduler (a
forked child) ends its wait between passes, rq's pubsub thread ends on the reply to
UNSUBSCRIBE, and a drainer loop lingering for new work gives its sink back at once."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
import redis as redis_lib
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer
from support.delivery import plain_runtime, publish_tickets
from support.servers import SinkServer

from gateway.delivery import drainer as drainer_module
from gateway.delivery.drainer import Drainer
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


def test_a_stopping_drainer_gives_back_a_sink_it_lingers_on_at_once(
        make_runtime: Any, redis_client: redis_lib.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # A linger longer than the stop's timeout below (and shorter than the client's 5 s socket
    # timeout): a stop that waited for it would give up with the lease still held.
    monkeypatch.setattr(drainer_module, "LINGER_S", 4.0)
    with SinkServer() as server:
        runtime = plain_runtime(make_runtime, server.url)
        (delivery_id,) = publish_tickets(runtime, 1)
        drainer = Drainer(runtime, 4)
        job = Job.fetch(redis_client.lpop(runtime.queue.key).decode(), connection=redis_client,
                        serializer=JSONSerializer)
        drainer.start(*job.args)  # what the worker does with the drain wake-up
        wait_until(lambda: server.received, "the delivery")
        # Delivered; the loop now lingers: blocked in Redis for more work, for a second already
        # (the shorter waits while an attempt runs are 0.1 s).
        wait_until(lambda: any(c["cmd"] == "blmove" and int(c["idle"]) >= 1 for c in redis_client.client_list()),
                   "the drainer to linger")
        assert redis_client.zcard(runtime.keys.drainers("hook")) == 1
        drainer.stop(timeout=1)
        assert redis_client.zcard(runtime.keys.drainers("hook")) == 0
        assert redis_client.hget(runtime.keys.delivery(delivery_id), "status") == b"delivered"
        # New work ends the block; the stopped loop claims none of it and ends.
        redis_client.rpush(runtime.keys.ready("hook"), "not-a-delivery")
        wait_until(lambda: drainer.idle, "the lingering loop to end")
        assert redis_client.lrange(runtime.keys.ready("hook"), 0, -1) == [b"not-a-delivery"]
        assert redis_client.zcard(runtime.keys.drainers("hook")) == 0
