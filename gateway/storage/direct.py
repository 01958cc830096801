"""One Lua script over a connection of its own: the receive path's single round trip.

redis-py spends about 30 µs of CPU on each command outside the network (connection-pool
lock, health bookkeeping, observability hooks, argument checks): measured with
``bench.costs``, a SET cost 38 µs through ``Redis.set`` and 7.6 µs as the same bytes on the
same socket. On the receive path, where the whole request is a few hundred µs, that is a
tenth of it. :class:`DirectScript` keeps its own redis-py connection (a fork never shares
one), made and authenticated by redis-py itself (TCP, unix socket, TLS, AUTH, SELECT all as
configured), and sends the packed EVALSHA through that connection's public
``send_packed_command`` / ``read_response`` (hiredis parsing), skipping the pool and the
command machinery. Under gevent the socket is gevent's: a request waiting for Redis (or for
a replica's ``WAIT``) lets the others run.

Calls made at the same time in one process share round trips (a group commit): under the
web server's gevent workers a dozen receives may be waiting on Redis at once, and each
paid a send, a receive and a wake-up of its own in the worker, and a read and a write in
Redis. Now the calls that arrive while a round trip is in flight go together in the next
one (see :class:`DirectScript`); with 16 bench connections Redis reads about one socket
read per four requests instead of one per request (docs/performance.md).

Failure semantics are stricter than redis-py's retry: a connection found closed before
sending is replaced, but a command is never sent twice: once sent, a lost reply raises
:class:`WriteUnconfirmed` (a ``redis.ConnectionError``; the caller answers 503 saying the
write may exist) instead of running the script a second time, which could store a ticket
twice. A connection that cannot be made at all raises redis-py's own ``ConnectionError``:
nothing was sent. In a batch, the calls whose replies were read before
the loss stand (they were written); every later one gets the error.

With a replicated :class:`~gateway.storage.replication.Durability`, the barrier ``PUBLISH``
and the ``WAIT`` go out in the same write as the batch's ``EVALSHA`` s (one ``WAIT`` confirms
the whole batch: replicas apply a master's writes in order); when the replicas do not
confirm in time, or the connection is lost after a script's own reply arrived,
:class:`~gateway.storage.replication.ReplicationTimeout` carries that reply: the write
happened, its replication is not confirmed.
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

MAX_IDLE = 64
"""Idle connections kept for reuse; beyond that (after a burst) they are closed."""
MAX_BATCH = 256
"""At most this many calls share one round trip (the rest go in the next)."""


class WriteUnconfirmed(redis.ConnectionError):
    """The connection was lost after the call was sent, before its reply was read: the
    script may have run (Redis died after writing, or the network dropped the reply) or not.
    Never re-sent; a client retrying with the same Idempotency-Key gets the original back."""


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


class _Call:
    """One script call in a group commit: its packed command, then its outcome."""

    __slots__ = ("command", "done", "durability", "error", "lead", "result")

    def __init__(self, command: bytes, durability: Durability) -> None:
        self.command = command
        self.durability = durability
        # threading.Event is gevent's in the web workers (monkey-patched): waiting on it
        # lets the process's other requests run.
        self.done = threading.Event()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class DirectScript:
    """``script(args=[...])`` like redis-py's registered Script, cheaper per call.

    Calls made at the same time in one process (the greenlets of a gevent web worker, or
    threads) share round trips: a group commit. The first caller to find no round trip in
    progress sends every queued call in one write and reads their replies in order; calls
    made meanwhile queue for the next write, which the first of them leads. Each caller
    returns only once its own reply was read (and, replicated, once one ``WAIT`` behind
    the batch confirmed it), so nothing is acknowledged earlier than with a round trip of
    its own, and a lost connection fails exactly the calls whose replies were not read."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.script: Script = client.register_script(source)
        # Not a threading.local: under gevent that is one per greenlet, i.e. per client
        # connection, and a new Redis connection for each. With one batch in flight at a
        # time the list holds one connection, handed from batch to batch.
        self.idle: list[_Link] = []
        self._queue: list[_Call] = []
        self._flushing = False
        self._lock = threading.Lock()
        self.batches = 0
        """Round trips made (for tests and the bench: calls / batches is the batch size)."""

    def __call__(self, args: list[Any], durability: Durability = LOCAL) -> Any:
        command = hiredis.pack_command(("EVALSHA", self.script.sha, 0, *args))
        try:
            return self._commit(command, durability)
        except redis.exceptions.NoScriptError:
            # Redis restarted, failed over or flushed its scripts: load it and run it (it did not run).
            self.client.script_load(self.script.script)
            return self._commit(command, durability)

    def _commit(self, command: bytes, durability: Durability) -> Any:
        call = _Call(command, durability)
        with self._lock:
            self._queue.append(call)
            lead = not self._flushing
            self._flushing = True
        if not lead:
            try:
                call.done.wait()
            except BaseException:
                self._abandon(call)
                raise
            lead = call.lead  # woken to send the next batch, its own call in it
        if lead:
            self._lead()
        return call.outcome()

    def _abandon(self, call: _Call) -> None:
        """The caller stopped waiting (its greenlet killed, a timeout): a call still queued
        is dropped, never sent; one handed the lead sends its batch anyway, or the calls
        queued behind it would wait for ever. One already sent runs; its reply is dropped."""
        with self._lock:
            if not call.lead:
                if call in self._queue:
                    self._queue.remove(call)
                return
        self._lead()

    def _lead(self) -> None:
        """Send one batch (the queue's head: the caller's own call first), then hand the
        lead to the first call queued meanwhile, or end the flush when none is."""
        batch: list[_Call] = []
        try:
            with self._lock:
                durability = self._queue[0].durability
                size = 1
                # One barrier covers one durability: a call with another waits for the next batch.
                while size < len(self._queue) and size < MAX_BATCH and self._queue[size].durability == durability:
                    size += 1
                batch, self._queue[:size] = self._queue[:size], []
            self._flush(batch, durability)
        finally:
            for call in batch:  # settled by _flush; unless something unforeseen escaped it
                if not call.done.is_set():
                    call.settle(error=WriteUnconfirmed("redis: the batch's round trip was interrupted"))
            with self._lock:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._flushing = False

    def _flush(self, batch: list[_Call], durability: Durability) -> None:
        """One round trip for ``batch``: settle each call with its reply or its error."""
        self.batches += 1
        try:
            link = self._link()
        except (OSError, redis.RedisError) as exc:
            error = exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(f"redis: {exc}")
            for call in batch:
                call.settle(error=error)
            return
        connection = link.connection
        in_step = False
        replies: list[tuple[_Call, Any]] = []
        try:
            payload = b"".join(call.command for call in batch)
            if durability.replicated:
                payload += durability.packed_barrier
            try:
                connection.send_packed_command([payload], check_health=False)
            except (OSError, redis.ConnectionError, redis.TimeoutError) as exc:
                lost = _lost(exc)
                for call in batch:
                    call.settle(error=lost)
                return
            for index, call in enumerate(batch):
                try:
                    replies.append((call, connection.read_response()))
                except redis.ResponseError as exc:
                    # The script's error reply (NoScriptError included): that call only.
                    call.settle(error=exc)
                except (OSError, redis.ConnectionError, redis.TimeoutError) as exc:
                    # Includes "the master moved" (a READONLY reply; see gateway.storage.connection).
                    # Replies already read stand (written); the rest are lost, never re-sent.
                    lost = _lost(exc)
                    for unread in batch[index:]:
                        unread.settle(error=lost)
                    if durability.replicated:  # written, but no WAIT will confirm it
                        for written, result in replies:
                            written.settle(error=ReplicationTimeout(durability, None, result))
                    else:
                        for written, result in replies:
                            written.settle(result)
                    return
            if not durability.replicated:
                in_step = True
                for call, result in replies:
                    call.settle(result)
                return
            try:
                connection.read_response()  # the barrier PUBLISH
                acked = int(connection.read_response())
            except (OSError, redis.RedisError) as exc:
                for call, result in replies:
                    call.settle(error=_unconfirmed(durability, None, result, exc))
                return
            in_step = True  # WAIT answered, perhaps with too few replicas
            for call, result in replies:
                try:
                    durability.check(acked, result)
                except ReplicationTimeout as short:
                    call.settle(error=short)
                else:
                    call.settle(result)
        finally:
            if in_step:
                self._release(link)
            else:
                link.close()

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


def _lost(exc: BaseException) -> WriteUnconfirmed:
    # Even a failed send may have delivered the batch's first calls whole (only complete
    # commands run, but a batch is several), so a send error is as uncertain as a lost reply.
    return WriteUnconfirmed(f"redis: {type(exc).__name__}: {exc}")


def _unconfirmed(durability: Durability, acked: int | None, result: Any, cause: BaseException) -> ReplicationTimeout:
    error = ReplicationTimeout(durability, acked, result)
    error.__cause__ = cause
    return error
