"""One Lua script called over a plain socket: the receive path's single round trip.

redis-py spends about 30 µs of CPU on each command outside the network (connection-pool
lock, health bookkeeping, observability hooks, argument checks): measured with
``bench.costs``, a SET cost 38 µs through ``Redis.set`` and 7.6 µs as the same bytes on the
same socket. On the receive path, where the whole request is a few hundred µs, that is a
tenth of it. :class:`DirectScript` keeps one connection per thread (and per process, so a
fork never shares one), made and authenticated by redis-py itself (TCP, unix socket, TLS,
AUTH, SELECT all as configured), and then writes the packed EVALSHA and parses the reply
with hiredis.

Failure semantics are stricter than redis-py's retry: a connection found closed before
sending is replaced, but a command is never sent twice: once sent, a lost reply raises
``redis.ConnectionError`` (the caller answers 503) instead of running the script a second
time, which could store a ticket twice.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
from typing import Any

import hiredis
import redis
from redis.commands.core import Script

READ_SIZE = 65536


class _Link:
    """A connected redis-py Connection and its raw socket, owned by one thread."""

    def __init__(self, client: redis.Redis) -> None:
        self.connection = client.connection_pool.make_connection()
        self.connection.connect()
        sock = getattr(self.connection, "_sock", None)
        if not isinstance(sock, socket.socket):  # a redis-py without it: use the client
            self.connection.disconnect()
            raise _Unsupported()
        self.sock = sock
        # Over TLS the raw socket can be readable with nothing for us (TLS 1.3 session
        # tickets arrive after the handshake), so there only a closed socket counts as stale;
        # a connection the server dropped then fails at its next use (a 503, never a resend).
        self.poll = not isinstance(sock, ssl.SSLSocket)
        self.reader = hiredis.Reader(replyError=redis.ResponseError)
        self.pid = os.getpid()

    def stale(self) -> bool:
        # With no request in flight nothing should be readable: when something is, the
        # server closed the connection (restart, idle timeout) or it is out of step.
        # A closed socket (the client's pool disconnects every connection it made, ours
        # too, e.g. after a fork or on close()) has no file descriptor any more.
        if self.pid != os.getpid() or self.sock.fileno() < 0:
            return True
        if not self.poll:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.connection.disconnect()


class _Unsupported(Exception):
    pass


class DirectScript:
    """``script(args=[...])`` like redis-py's registered Script, cheaper per call."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.client = client
        self.script: Script = client.register_script(source)
        self.local = threading.local()
        self.unsupported = False

    def __call__(self, args: list[Any]) -> Any:
        if self.unsupported:
            return self.script(args=args)
        link = self._link()
        if link is None:
            return self.script(args=args)
        command = hiredis.pack_command(("EVALSHA", self.script.sha, 0, *args))
        reply = self._round_trip(link, command)
        if isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT"):
            # Redis restarted or flushed its scripts: load it and run it (it did not run).
            self.client.script_load(self.script.script)
            reply = self._round_trip(link, command)
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _link(self) -> _Link | None:
        link: _Link | None = getattr(self.local, "link", None)
        if link is not None and link.stale():
            link.close()
            link = None
        if link is None:
            try:
                link = _Link(self.client)
            except _Unsupported:
                self.unsupported = True
                return None
            self.local.link = link
        return link

    def _round_trip(self, link: _Link, command: bytes) -> Any:
        try:
            link.sock.sendall(command)
            while True:
                reply = link.reader.gets()
                if reply is not False:
                    return reply
                chunk = link.sock.recv(READ_SIZE)
                if not chunk:
                    raise ConnectionResetError("Redis closed the connection")
                link.reader.feed(chunk)
        except (OSError, hiredis.ProtocolError) as exc:
            self.local.link = None
            link.close()
            raise redis.ConnectionError(f"redis: {type(exc).__name__}: {exc}") from exc
