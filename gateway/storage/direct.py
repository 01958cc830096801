"""One Lua script over a connection of its own: the receive path's single round trip.

redis-py spends about 30 µs of CPU on each command outside the network (connection-pool
lock, health bookkeeping, observability hooks, argument checks): measured with
``bench.costs``, a SET cost 38 µs through ``Redis.set`` and 7.6 µs as the same bytes on the
same socket. On the receive path, where the whole request is a few hundred µs, that is a
tenth of it. :class:`DirectScript` keeps its own redis-py connections, one per call in
progress (per thread, or per greenlet under the web server's gevent workers, each taking an
idle one and handing it back; a fork never shares one), made and authenticated by redis-py
itself (TCP, unix socket, TLS, AUTH, SELECT all as configured), and sends the packed EVALSHA
through that connection's public ``send_packed_command`` / ``read_response`` (hiredis
parsing), skipping the pool and the command machinery. Under gevent the socket is gevent's:
a request waiting for Redis (or for a replica's ``WAIT``) lets the others run.

Failure semantics are stricter than redis-py's retry: a connection found closed before
sending is replaced, but a command is never sent twice: once sent, a lost reply raises
``redis.ConnectionError`` (the caller answers 503) instead of running the script a second
time, which could store a ticket twice.

With a replicated :class:`~gateway.storage.replication.Durability`, the barrier ``PUBLISH``
and the ``WAIT`` go out in the same write as the ``EVALSHA`` (three commands, three replies,
one round trip); when the replicas do not confirm in time, or the connection is lost after
the script's own reply arrived, :class:`~gateway.storage.replication.ReplicationTimeout`
carries the script's reply: the write happened, its replication is not confirmed.
"""

from __future__ import annotations

import os
from typing import Any, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.connection import AbstractConnection

from gateway.storage.replication import LOCAL, Durability, ReplicationTimeout

MAX_IDLE = 64
"""Idle connections kept for reuse; beyond that (after a burst) they are closed."""


class _Link:
    """A connected redis-py connection, used by one caller at a time, in one process."""

    def __init__(self, client: redis.Redis) -> None:
        self.connection = cast(AbstractConnection, client.connection_pool.make_connection())
        self.connection.connect()
        self.pid = os.getpid()

    def stale(self) -> bool:
        # With no request in flight nothing should be readable: when something is, the
        # server closed the connection (restart, idle timeout) or it is out of step.
        if self.pid != os.getpid():
            return True
        try:
            return self.connection.can_read(timeout=0)
        except (OSError, redis.ConnectionError):
            return True

    def close(self) -> None:
        self.connection.disconnect()


class DirectScript:
    """``script(args=[...])`` like redis-py's registered Script, cheaper per call."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.script: Script = client.register_script(source)
        # Not a threading.local: under gevent that is one per greenlet, i.e. per client
        # connection, and a new Redis connection for each. list.pop/append are atomic.
        self.idle: list[_Link] = []

    def __call__(self, args: list[Any], durability: Durability = LOCAL) -> Any:
        command = hiredis.pack_command(("EVALSHA", self.script.sha, 0, *args))
        if durability.replicated:
            command += durability.packed_barrier
        try:
            return self._round_trip(self._link(), command, durability)
        except redis.exceptions.NoScriptError:
            # Redis restarted, failed over or flushed its scripts: load it and run it (it did not run).
            self.client.script_load(self.script.script)
            return self._round_trip(self._link(), command, durability)

    def _link(self) -> _Link:
        while True:
            try:
                link = self.idle.pop()
            except IndexError:
                return _Link(self.client)
            if not link.stale():
                return link
            link.close()

    def _release(self, link: _Link) -> None:
        if len(self.idle) < MAX_IDLE:
            self.idle.append(link)
        else:
            link.close()

    def _round_trip(self, link: _Link, command: bytes, durability: Durability) -> Any:
        """Send ``command``, read its replies; hand ``link`` back when it is still in step
        (every reply read), else close it."""
        in_step = False
        try:
            result = self._exchange(link.connection, command, durability)
            in_step = True
            return result
        except redis.ResponseError:
            # The script's error reply (NoScriptError included): in step once the barrier's are read.
            in_step = not durability.replicated or self._skip_barrier(link)
            raise
        except ReplicationTimeout as exc:
            in_step = exc.acked is not None  # WAIT answered, only not enough replicas
            raise
        finally:
            if in_step:
                self._release(link)
            else:
                link.close()

    @staticmethod
    def _exchange(connection: AbstractConnection, command: bytes, durability: Durability) -> Any:
        try:
            connection.send_packed_command([command], check_health=False)
            result = connection.read_response()
        except redis.ResponseError:
            raise
        except (OSError, redis.ConnectionError, redis.TimeoutError) as exc:
            # Includes "the master moved" (a READONLY reply; see gateway.storage.connection).
            raise redis.ConnectionError(f"redis: {type(exc).__name__}: {exc}") from exc
        if not durability.replicated:
            return result
        try:
            connection.read_response()  # the barrier PUBLISH
            acked = int(connection.read_response())
        except (OSError, redis.RedisError) as exc:
            raise ReplicationTimeout(durability, None, result) from exc
        durability.check(acked, result)
        return result

    @staticmethod
    def _skip_barrier(link: _Link) -> bool:
        """Read the barrier's two replies behind a script that failed, so the connection
        stays in step; False when that failed (the connection is then closed)."""
        try:
            link.connection.read_response()
            link.connection.read_response()
        except (OSError, redis.RedisError):
            return False
        return True
