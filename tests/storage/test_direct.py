"""gateway.storage.direct.DirectScript: the receive path's script call on a connection of its own,
against a real Redis: it recovers where redis-py's Script would (a flushed script cache,
a connection the server dropped) and reports errors as redis-py does."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
import redis

from gateway.storage.connection import connect
from gateway.storage.direct import DirectScript

ECHO = "redis.call('INCR', KEYS[1] or 'gw:test:calls') return {ARGV[1], tonumber(ARGV[2]) + 1}"


@pytest.fixture
def client(redis_url: str) -> Any:
    client = connect(redis_url)
    yield client
    client.close()


def test_it_runs_the_script_and_returns_redis_types(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, ECHO)
    assert script(["hello", 41]) == [b"hello", 42]
    assert redis_client.get("gw:test:calls") == b"1"


def test_a_flushed_script_cache_is_reloaded_and_the_call_runs_once(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, ECHO)
    script(["a", 1])
    redis_client.script_flush()
    assert script(["b", 2]) == [b"b", 3]
    assert redis_client.get("gw:test:calls") == b"2"  # NOSCRIPT ran nothing; the retry ran once


def test_a_connection_the_server_dropped_is_replaced_before_use(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, ECHO)
    script(["a", 1])
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert script(["b", 2]) == [b"b", 3]
    assert redis_client.get("gw:test:calls") == b"2"


def test_script_errors_raise_like_redis_py(client: Any) -> None:
    script = DirectScript(client, "return redis.error_reply('boom')")
    with pytest.raises(redis.ResponseError, match="boom"):
        script([])
    assert DirectScript(client, ECHO)(["still fine", 0]) == [b"still fine", 1]


def test_each_thread_has_its_own_connection(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, ECHO)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for i in range(50):
                assert script([str(i), i]) == [str(i).encode(), i + 1]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert redis_client.get("gw:test:calls") == b"200"


def test_redis_down_is_a_connection_error(client: Any) -> None:
    down = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(redis.ConnectionError):
        DirectScript(down, ECHO)(["x", 1])


def test_after_a_burst_64_idle_connections_are_kept_and_the_rest_closed(client: Any) -> None:
    script = DirectScript(client, ECHO)
    burst = [script._link() for _ in range(70)]  # 70 callers at once, each on its own connection
    for link in burst:
        script._release(link)
    assert len(script.idle) == 64
    assert all(link.connection._sock is not None for link in script.idle)
    assert all(link.connection._sock is None for link in burst[64:])  # closed, not kept
    assert script(["after", 1]) == [b"after", 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_uses_its_parents_connection(client: Any) -> None:
    # Two processes on one socket would read each other's replies: a child (an rq work
    # horse, a gunicorn worker) opens its own.
    script = DirectScript(client, ECHO)
    assert script(["parent", 1]) == [b"parent", 2]
    [parents] = script.idle
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit status
        ok = script(["child", 1]) == [b"child", 2] and parents not in script.idle and all(
            link.pid == os.getpid() for link in script.idle)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert script(["parent", 2]) == [b"parent", 3]
