"""urllib3 connections that write a request's head and body in one ``send``.

urllib3 sends the request line and headers, then the body, as two writes. On a keep-alive
connection to a fast receiver each write is a system call and a TCP segment the receiver
(and, over loopback, this process, in the kernel) pays for: for a webhook of a few hundred
bytes to a couple of KB that is a second segment for no reason. These connection classes
hold the head back and send it together with a ``bytes`` body (what every sink renders),
so one request is one write. Other bodies (none, streamed, chunked) go out as urllib3 sends
them. Nothing else about the request changes: the same bytes, in the same order, on the
same socket.
"""

from __future__ import annotations

from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _OneWrite:
    """Mixin for urllib3's HTTP(S)Connection: request head + ``bytes`` body in one send."""

    _hold_head = False
    _head: bytes | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any) -> None:
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


class OneWriteHTTPConnection(_OneWrite, HTTPConnection):
    """urllib3's HTTPConnection, one write per request (see the module)."""


class OneWriteHTTPSConnection(_OneWrite, HTTPSConnection):
    """urllib3's HTTPSConnection, one write per request (see the module)."""


class OneWriteHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = OneWriteHTTPConnection


class OneWriteHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = OneWriteHTTPSConnection
