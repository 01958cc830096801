"""gateway.storage.direct.DirectScript: the receive path's script call on a connection of its own,
against a real Redis: it recovers where redis-py's Script would (a flushed script cache,
a connection the server dropped) and reports errors as redis-py does."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from gateway.storage.connection import connect
from gateway.storage.direct import DirectScript, WriteUnconfirmed
from gateway.storage.replication import LOCAL, Durability, ReplicationTimeout
from gateway.testing import child_env, wait_until

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


def test_each_round_trip_is_counted_from_the_first(client: Any) -> None:
    # What the bench divides by (calls per round trip): one call alone is one round trip
    # (the script loaded already: else its NOSCRIPT answer is one more).
    client.script_load(ECHO)
    script = DirectScript(client, ECHO)
    assert script.batches == 0
    script(["one", 1])
    assert script.batches == 1


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


def test_redis_down_is_a_connection_error_that_says_why(client: Any) -> None:
    down = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    refused = r"^Error \d+ connecting to 127\.0\.0\.1:1\. Connection refused"
    with pytest.raises(redis.ConnectionError, match=refused) as raised:
        DirectScript(down, ECHO)(["x", 1])
    # Nothing was sent, so nothing can have been written: not the "may have run" error.
    assert not isinstance(raised.value, WriteUnconfirmed)


# -- group commit: calls made at the same time share one round trip -----------------------------

STORE = "redis.call('SET', 'gw:test:stored:' .. ARGV[1], ARGV[1]) return ARGV[1]"


def _start(script: DirectScript, names: list[str], outcomes: dict[str, Any],
           durability: Durability = LOCAL) -> list[threading.Thread]:
    def run(name: str) -> None:
        try:
            outcomes[name] = script([name], durability)
        except BaseException as exc:  # noqa: BLE001 - asserted on
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    return threads


def _queued(script: DirectScript, count: int) -> Callable[[], bool]:
    return lambda: len(script._queue) == count


def test_calls_made_during_a_round_trip_go_together_in_the_next(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, STORE)
    script(["warm"])  # loaded, one connection idle
    outcomes: dict[str, Any] = {}
    before = script.batches
    redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")  # holds every script call
    try:
        first = _start(script, ["first"], outcomes)
        wait_until(lambda: script.batches == before + 1, "the first call's round trip to start")
        rest = _start(script, [f"call-{i}" for i in range(15)], outcomes)
        wait_until(_queued(script, 15), "the other calls to queue behind it")
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    for thread in first + rest:
        thread.join()
    assert outcomes == {name: name.encode() for name in ["first", *(f"call-{i}" for i in range(15))]}
    assert script.batches == before + 2  # first, then the fifteen in one
    stored = {key.decode() for key in redis_client.keys("gw:test:stored:*")}
    assert stored == {f"gw:test:stored:{name}" for name in outcomes} | {"gw:test:stored:warm"}


def test_a_script_error_in_a_batch_fails_only_its_own_call(client: Any, redis_client: Any) -> None:
    script = DirectScript(client, "if ARGV[1] == 'bad' then return redis.error_reply('boom') end " + STORE)
    script(["warm"])
    outcomes: dict[str, Any] = {}
    before = script.batches
    redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        first = _start(script, ["first"], outcomes)
        wait_until(lambda: script.batches == before + 1, "the first call's round trip to start")
        rest = _start(script, ["a", "bad", "b"], outcomes)
        wait_until(_queued(script, 3), "the other calls to queue")
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    for thread in first + rest:
        thread.join()
    assert isinstance(outcomes.pop("bad"), redis.ResponseError)
    assert outcomes == {"first": b"first", "a": b"a", "b": b"b"}
    assert script(["after"]) == b"after"  # the connection stayed in step


def test_a_connection_lost_mid_batch_fails_every_unanswered_call_and_loses_no_answered_one(
        client: Any, redis_client: Any) -> None:
    script = DirectScript(client, STORE)
    script(["warm"])
    outcomes: dict[str, Any] = {}
    names = [f"call-{i}" for i in range(12)]
    before = script.batches
    redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        first = _start(script, ["first"], outcomes)
        wait_until(lambda: script.batches == before + 1, "the first call's round trip to start")
        rest = _start(script, names, outcomes)
        wait_until(_queued(script, 12), "the other calls to queue")
        # The batch in flight loses its connection: its call fails; the twelve go next, on a
        # new connection, and lose it too while Redis holds them.
        redis_client.client_kill_filter(_type="normal", skipme=True)
        wait_until(lambda: script.batches == before + 2 and not script._queue, "the twelve to be sent together")
        wait_until(lambda: len(redis_client.client_list(_type="normal")) > 1, "their connection")
        redis_client.client_kill_filter(_type="normal", skipme=True)
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    for thread in first + rest:
        thread.join()
    failed = {name for name, outcome in outcomes.items() if isinstance(outcome, WriteUnconfirmed)}
    assert failed == {"first", *names}  # each unanswered call: an error (a 503), never a retry
    stored = {key.decode().removeprefix("gw:test:stored:") for key in redis_client.keys("gw:test:stored:*")}
    assert stored == {"warm"}  # Redis dropped the killed connections' calls: nothing ran unreported
    assert script(["after"]) == b"after"  # and the next call gets a working connection



GEVENT_SETUP = """
import sys
from gevent import monkey
monkey.patch_all()
import gevent
from gateway.storage.connection import connect
from gateway.storage.direct import DirectScript

client, admin = connect(sys.argv[1]), connect(sys.argv[1])
script = DirectScript(client, sys.argv[2])
script(["warm"])
before = script.batches

def until(check):
    while not check():
        gevent.sleep(0.01)
"""
"""What the gevent scenarios below start with (in a process of their own: gevent patches
the whole process): a DirectScript on the test Redis, warmed, a client to pause Redis with,
and ``until`` to wait for a step."""


def run_gevent_scenario(body: str, redis_url: str) -> str:
    """Run :data:`GEVENT_SETUP` and then ``body`` in a fresh Python; what it printed."""
    done = subprocess.run([sys.executable, "-c", GEVENT_SETUP + body, redis_url, STORE], capture_output=True,
                          text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


QUITTER = """
admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
try:
    first = gevent.spawn(script, ["first"])
    until(lambda: script.batches == before + 1)
    quitter = gevent.spawn(script, ["quitter"])
    until(lambda: len(script._queue) == 1)
    quitter.kill()  # as a web worker's greenlet can be, while it waits for its turn
    rest = [gevent.spawn(script, [name]) for name in ("after-1", "after-2")]
    until(lambda: len(script._queue) == 2)
finally:
    admin.execute_command("CLIENT", "UNPAUSE")
gevent.joinall([first, *rest], raise_error=True)
print(first.value, [g.value for g in rest], admin.get("gw:test:stored:quitter"), quitter.dead)
"""


def test_a_greenlet_killed_while_queued_is_not_sent_and_the_others_are_answered(
        redis_url: str, redis_client: Any) -> None:
    assert run_gevent_scenario(QUITTER, redis_url) == "b'first' [b'after-1', b'after-2'] None True"


LEADER_KILLED = """
admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
try:
    first = gevent.spawn(script, ["first"])
    until(lambda: script.batches == before + 1)
    leader = gevent.spawn(script, ["leader"])
    until(lambda: len(script._queue) == 1)
    member = gevent.spawn(script, ["member"])
    until(lambda: len(script._queue) == 2)
    first.kill()  # gives up its round trip: "leader" leads the next batch, with "member" in it
    until(lambda: script.batches == before + 2)
    leader.kill()  # killed waiting for that batch's replies, as a web worker's greenlet can be
    member.join(timeout=10)
finally:
    admin.execute_command("CLIENT", "UNPAUSE")
print(member.dead, type(member.exception).__name__, member.exception)
"""


def test_a_leader_killed_in_its_round_trip_fails_the_others_of_its_batch_instead_of_leaving_them_waiting(
        redis_url: str, redis_client: Any) -> None:
    assert run_gevent_scenario(LEADER_KILLED, redis_url) == (
        "True WriteUnconfirmed redis: the batch's round trip was interrupted")


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


def test_calls_of_another_durability_wait_for_a_batch_of_their_own(client: Any, redis_client: Any) -> None:
    # One WAIT covers one batch: a local call queued first must not wait for replicas
    # because a replicated call queued behind it, nor a replicated one go without its WAIT.
    replicated = Durability(replicas=1, timeout_ms=100)  # this Redis has no replica: WAIT says 0
    script = DirectScript(client, STORE)
    script(["warm"])
    outcomes: dict[str, Any] = {}
    before = script.batches

    redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        threads = _start(script, ["first"], outcomes)
        wait_until(lambda: script.batches == before + 1, "the first call's round trip to start")
        threads += _start(script, ["local"], outcomes)
        wait_until(_queued(script, 1), "the local call to queue")
        for queued, name in enumerate(["replicated-1", "replicated-2"], start=2):
            threads += _start(script, [name], outcomes, replicated)
            wait_until(_queued(script, queued), f"{name} to queue behind it")
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    for thread in threads:
        thread.join()
    assert outcomes["first"] == b"first" and outcomes["local"] == b"local"
    for name in ("replicated-1", "replicated-2"):  # one WAIT for both; each told about its own write
        unconfirmed = outcomes[name]
        assert isinstance(unconfirmed, ReplicationTimeout), unconfirmed
        assert (unconfirmed.acked, unconfirmed.result) == (0, name.encode())  # written, not confirmed
    assert script.batches == before + 3
    assert len(script.idle) == 1  # WAIT answered: the connection is in step, and kept for the next



def test_a_replica_confirmation_redis_refuses_leaves_no_reply_behind_for_the_next_call(
        redis_url: str, redis_client: Any) -> None:
    # A Redis user allowed to run scripts but not PUBLISH (an ACL): the barrier behind a
    # replicated write is refused, its WAIT's reply is still on the way. The write is
    # reported as not confirmed, and the connection is not used again: the next call on it
    # would read that WAIT's reply as its own answer.
    redis_client.acl_setuser("no-publish", enabled=True, passwords=["+a-password-for-this-test-only"],
                             keys=["~*"], channels=["*"], commands=["+@all", "-publish"])
    try:
        limited = connect(redis_url, username="no-publish", password="a-password-for-this-test-only")
        script = DirectScript(limited, STORE)
        script(["warm"])
        with pytest.raises(ReplicationTimeout) as caught:
            script(["written"], Durability(replicas=1, timeout_ms=100))
        assert caught.value.result == b"written" and isinstance(caught.value.__cause__, redis.ResponseError)
        assert script(["after"]) == b"after"
        limited.close()
    finally:
        redis_client.acl_deluser("no-publish")


@pytest.mark.parametrize(("queued", "round_trips"), [(256, 1), (257, 2)])
def test_at_most_256_calls_share_a_round_trip(client: Any, redis_client: Any, queued: int, round_trips: int) -> None:
    script = DirectScript(client, STORE)
    script(["warm"])
    outcomes: dict[str, Any] = {}
    before = script.batches
    redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        first = _start(script, ["first"], outcomes)
        wait_until(lambda: script.batches == before + 1, "the first call's round trip to start")
        rest = _start(script, [f"call-{i}" for i in range(queued)], outcomes)
        wait_until(_queued(script, queued), "the other calls to queue behind it")
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    for thread in first + rest:
        thread.join()
    assert len(outcomes) == queued + 1 and all(outcome == name.encode() for name, outcome in outcomes.items())
    assert script.batches == before + 1 + round_trips
