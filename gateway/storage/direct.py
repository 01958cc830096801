"""One Lua script over a connection of its own: the receive path's single round trip.

redis-py spends about 30 µs of CPU on each command outside the network (connection-pool
lock, health bookkeeping, observability hooks, argument checks): measured with
``bench.costs``, a SET cost 38 µs through ``Redis.set`` and 7.6 µs as the same bytes on the
same socket. On the receive path, where the whole request is a few hundred µs, that is a
tenth of it. :class:`DirectScript` keeps one redis-py connection per thread (and per
process, so a fork never shares one), made and authenticated by redis-py itself (TCP, unix
socket, TLS, AUTH, SELECT all as configured), and sends the packed EVALSHA through that
connection's public ``send_packed_command`` / ``read_response`` (hiredis parsing), skipping
the pool and the command machinery.

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
import threading
from typing import Any, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.connection import AbstractConnection

from gateway.storage.replication import LOCAL, Durability, ReplicationTimeout


class _Link:
    """A connected redis-py connection owned by one thread of one process."""

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
        self.local = threading.local()

    def __call__(self, args: list[Any], durability: Durability = LOCAL) -> Any:
        link = self._link()
        command = hiredis.pack_command(("EVALSHA", self.script.sha, 0, *args))
        if durability.replicated:
            command += durability.packed_barrier
        try:
            return self._round_trip(link, command, durability)
        except redis.exceptions.NoScriptError:
            # Redis restarted, failed over or flushed its scripts: load it and run it (it did not run).
            self.client.script_load(self.script.script)
            return self._round_trip(self._link(), command, durability)

    def _link(self) -> _Link:
        link: _Link | None = getattr(self.local, "link", None)
        if link is not None and link.stale():
            link.close()
            link = None
        if link is None:
            link = self.local.link = _Link(self.client)
        return link

    def _round_trip(self, link: _Link, command: bytes, durability: Durability) -> Any:
        connection = link.connection
        try:
            connection.send_packed_command([command], check_health=False)
            result = connection.read_response()
        except redis.ResponseError:
            if durability.replicated:
                self._skip_barrier(link)
            raise
        except (OSError, redis.ConnectionError, redis.TimeoutError) as exc:
            # Includes "the master moved" (a READONLY reply; see gateway.storage.connection).
            self._drop(link)
            raise redis.ConnectionError(f"redis: {type(exc).__name__}: {exc}") from exc
        if not durability.replicated:
            return result
        try:
            connection.read_response()  # the barrier PUBLISH
            acked = int(connection.read_response())
        except (OSError, redis.RedisError) as exc:
            self._drop(link)
            raise ReplicationTimeout(durability, None, result) from exc
        durability.check(acked, result)
        return result

    def _skip_barrier(self, link: _Link) -> None:
        """Read the barrier's two replies behind a script that failed, so the connection
        stays in step (or drop it)."""
        try:
            link.connection.read_response()
            link.connection.read_response()
        except (OSError, redis.RedisError):
            self._drop(link)

    def _drop(self, link: _Link) -> None:
        self.local.link = None
        link.close()
