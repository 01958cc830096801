"""urllib3 connections that write a request's head and body in one ``send``.

urllib3 sends the request line and headers, then the body, as two writes. On a keep-alive
connection to a fast receiver each write is a system call and a TCP segment the receiver
(and, over loopback, this process, in the kernel) pays for: for a webhook of a few hundred
bytes to a couple of KB that is a second segment for no reason. These connection classes
hold the head back and send it together with a ``bytes`` body (what every sink renders),
so one request is one write. Other bodies (none, streamed, chunked) go out as urllib3 sends
them. Nothing else about the request changes: the same bytes, in the same order, on the
same socket.

They also spare a kept-alive plain-HTTP connection two system calls per request: urllib3
sets the socket's timeout before sending (to the connect timeout) and again before reading
the response (to the read timeout), and each ``settimeout`` is an ``ioctl`` (which lets go of
the GIL, so with many delivery threads also a hand-off) even when the value does not
change. A request on a kept-alive connection is written with the timeout its socket already
has, and the socket skips ``settimeout`` when asked for the timeout it has (see
:class:`SteadyTimeoutSocket`). New connections still connect within the connect timeout;
TLS sockets are left as they are.

And a header line costs a third of what urllib3 and http.client spend on it together (a
request carries a dozen: ~200 Python calls of a delivery's ~1,400): for the one ``str`` value
every sink gives, :meth:`_OneWrite.putheader` makes the same checks with http.client's own
patterns and writes the same bytes, and hands anything else to them.
"""

from __future__ import annotations

import contextvars
import http.client
import socket
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import SKIP_HEADER

# http.client's own header checks (what its putheader applies): the same names and values
# are refused, with the same errors, whichever way a header goes out.
_legal_header_name = http.client._is_legal_header_name  # type: ignore[attr-defined]
_illegal_header_value = http.client._is_illegal_header_value  # type: ignore[attr-defined]
_REQUEST_STARTED = http.client._CS_REQ_STARTED  # type: ignore[attr-defined]

TIMEOUT_SLACK_S = 0.01
"""A timeout this close to the socket's current one is taken as the same: urllib3 asks for
the read timeout less the time since the request started (``Timeout(total=...)``), a value a
few microseconds different at every request."""


REQUEST_TIMEOUT: contextvars.ContextVar[float] = contextvars.ContextVar("REQUEST_TIMEOUT", default=0.0)
"""The whole timeout of the request being sent in this thread (set by the outbound client;
0 = not known). A kept-alive socket's timeout is the previous request's read timeout, maybe
another sink's on the same host: it is kept for writing this request only when it is no
longer than this one's, so a stalled write never outlasts the attempt's own timeout (and the
in-flight lease computed from it)."""


class SteadyTimeoutSocket(socket.socket):
    """A socket whose ``settimeout`` does nothing when asked for the timeout it already has,
    give or take :data:`TIMEOUT_SLACK_S` (CPython's makes an ``ioctl`` at every call)."""

    __slots__ = ()

    @classmethod
    def adopt(cls, sock: socket.socket) -> SteadyTimeoutSocket:
        """The same connected socket (same file descriptor, options and timeout) as this
        class; ``sock`` is detached and must not be used afterwards."""
        timeout = sock.gettimeout()
        steady = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        # A socket made from a descriptor starts with the default timeout: put ours back
        # (through the base class: the descriptor's blocking mode must follow it).
        socket.socket.settimeout(steady, timeout)
        return steady

    def settimeout(self, value: float | None) -> None:
        current = self.gettimeout()
        if value is None or current is None or not value or abs(value - current) > TIMEOUT_SLACK_S:
            super().settimeout(value)


class _OneWrite:
    """Mixin for urllib3's HTTP(S)Connection: request head + ``bytes`` body in one send,
    and a plain socket that sets its timeout only when it changes."""

    _hold_head = False
    _head: bytes | None = None
    # http.client's, set on the instance there (annotated here for the type checker only).
    sock: Any
    timeout: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        sock = self.sock
        if type(sock) is socket.socket:  # plain HTTP (TLS wraps it in an SSLSocket)
            self.sock = SteadyTimeoutSocket.adopt(sock)

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        sock = self.sock
        if isinstance(sock, SteadyTimeoutSocket):
            # Kept alive from an earlier request: urllib3 gave the connection its connect
            # timeout (min(timeout, 5 s)) to write with, and the read timeout right after;
            # writing a request into an open socket with the read timeout it still has
            # (the previous request's) spares both ioctls, when that is within this
            # request's own timeout (REQUEST_TIMEOUT).
            current = sock.gettimeout()
            if current is not None and current <= REQUEST_TIMEOUT.get():
                self.timeout = current
        hold = isinstance(body, bytes) and bool(body) and not kwargs.get("chunked")
        self._hold_head = hold
        self._head = None
        try:
            super().request(method, url, body=body, headers=headers, **kwargs)  # type: ignore[misc]
            if self._head is not None:  # no body chunk came after all: the head alone
                head, self._head = self._head, None
                super().send(head)
        finally:
            self._hold_head = False
            self._head = None

    def putheader(self, header: str, *values: str) -> None:
        if (len(values) == 1 and type(header) is str and type(values[0]) is str and values[0] != SKIP_HEADER
                and getattr(self, "_HTTPConnection__state", None) == _REQUEST_STARTED):
            # (http.client's own state check: a header only right after the request line.)
            name = header.encode("ascii")
            value = values[0].encode("latin-1")
            if _legal_header_name(name) and not _illegal_header_value(value):
                self._output(name + b": " + value)  # type: ignore[attr-defined]
                return
        # Several values, bytes, urllib3's SKIP_HEADER, or a header to refuse: theirs.
        super().putheader(header, *values)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self._hold_head and self._head is None and isinstance(data, bytes):
            # http.client's endheaders() writing the head: keep it for the body.
            self._hold_head = False
            self._head = data
            return
        if self._head is not None and isinstance(data, bytes):
            head, self._head = self._head, None
            data = head + data
        super().send(data)  # type: ignore[misc]


class OneWriteHTTPConnection(_OneWrite, HTTPConnection):  # type: ignore[misc]  # putheader: urllib3 narrows it too
    """urllib3's HTTPConnection, one write per request (see the module)."""


class OneWriteHTTPSConnection(_OneWrite, HTTPSConnection):  # type: ignore[misc]  # as above
    """urllib3's HTTPSConnection, one write per request (see the module)."""


class OneWriteHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = OneWriteHTTPConnection


class OneWriteHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = OneWriteHTTPSConnection
