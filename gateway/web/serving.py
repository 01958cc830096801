"""How the web server reads requests: gevent workers with read deadlines and whole bodies.

gunicorn's sync worker reads a request with the whole process: two clients that connect and
send nothing (or a header byte a second) held both web workers of a default ``gateway run``,
and every other request waited. :class:`GatewayWorker` (gunicorn's gevent worker) gives each
connection a greenlet instead, so an idle connection costs a socket and a few KiB, not a
worker, and bounds how long any connection may take (``[web]`` in the config,
:class:`gateway.config.WebSettings`):

* **headers**: a request's line and headers must arrive within ``header_timeout`` seconds of
  the connection being accepted (or, kept alive, of the previous response); else the
  connection is closed, as nginx does.
* **body**: read *whole* before the WSGI application runs, at ``body_min_rate`` bytes/s on
  average after a grace of ``body_timeout`` seconds (Apache's mod_reqtimeout rule); else
  ``408 request_timeout`` and the connection is closed. The application therefore never
  waits on a client: a request it sees is complete, and its time is its own work.
* **connections**: at most ``max_connections`` per worker process; more wait in the
  listen backlog.

Every process serving the gateway uses it: ``gateway web`` and ``gateway run``
(:class:`gateway.web.wsgi.GatewayServer`), and plain gunicorn through
``gunicorn -c python:gateway.web.gunicorn_conf 'gateway.web.wsgi:app'``.
"""

from __future__ import annotations

import io
import json
import resource
import socket
import time
import warnings
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from gateway.config import GatewaySection, WebSettings
from gateway.errors import ApiError
from gateway.web.wsgi import gunicorn_options

DEFAULT_MAX_BODY = GatewaySection().load({})["max_body_bytes"]
"""The body limit for an application that sets none (the gateway's app sets its own)."""
READ_STEP = 65_536


class BodyTooSlow(Exception):
    """A request body did not keep up with ``body_min_rate``."""


class PacedSocket:
    """The client socket, whose ``recv`` fails with :class:`BodyTooSlow` once a body being
    read falls behind its deadline; everything else is the socket's own."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._pace: tuple[WebSettings, float] | None = None
        self.received = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def pace(self, web: WebSettings) -> None:
        """Reads from now on are a body's, under ``web``'s deadline."""
        self._pace = (web, time.monotonic())
        self.received = 0

    def unpace(self) -> None:
        self._pace = None
        self._sock.settimeout(None)

    def recv(self, size: int, *flags: int) -> bytes:
        if self._pace is None:
            return self._sock.recv(size, *flags)
        web, started = self._pace
        left = web.body_deadline(started, self.received) - time.monotonic()
        if left <= 0:
            raise BodyTooSlow()
        self._sock.settimeout(left)
        try:
            data: bytes = self._sock.recv(size, *flags)
        except TimeoutError:
            raise BodyTooSlow() from None
        self.received += len(data)
        return data


def _content_length(req: Any) -> int | None:
    for name, value in req.headers:
        if name == "CONTENT-LENGTH":
            return int(value)  # gunicorn's parser has already refused anything else
    return None


def _timeout_response() -> bytes:
    error = ApiError(408, "request_timeout", "The request body arrived too slowly; send it again at a normal pace.")
    body = json.dumps(error.body(), separators=(",", ":")).encode()
    head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class GatewayWorker(GeventWorker):
    """gunicorn's gevent worker with read deadlines and buffered bodies (module docstring)."""

    web: WebSettings = WebSettings()

    def patch(self) -> None:
        # The master (gateway web) imported urllib3 before this fork, so gevent warns that
        # urllib3's SSLContext stays unpatched: web processes make no outbound HTTPS calls
        # (deliveries run on workers; Redis TLS goes through the patched ssl module).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Monkey-patching ssl after ssl")
            super().patch()

    def init_process(self) -> None:
        self.web = getattr(self.app, "web_settings", None) or WebSettings()
        if not self.cfg.keepalive:
            # Without keep-alive gunicorn reads the first request's headers with no bound.
            self.cfg.set("keepalive", gunicorn_options(self.web)["keepalive"])
        _allow_open_files(self.cfg.worker_connections + 256)
        super().init_process()

    def timeout_ctx(self) -> Any:
        # Bounds every request's line and headers (and a kept-alive connection's idle wait);
        # False: a timeout ends the connection quietly instead of raising.
        return gevent.Timeout(self.web.header_timeout, False)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        super().handle(listener, PacedSocket(client), addr)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY
        length = _content_length(req)
        if length is not None and length > limit:
            # The application answers 413 without reading it: no reason to take it either.
            req.must_close = True
        else:
            try:
                whole = self._read_body(req, sock, limit)
            except BodyTooSlow:
                self.log.info("closed a connection from %s: its request body came slower than %d bytes/s",
                              addr[0] if isinstance(addr, tuple) else addr, self.web.body_min_rate)
                self._send_quietly(sock, _timeout_response())
                raise StopIteration() from None
            if not whole:
                # A chunked body over the limit: the application sees limit + 1 bytes and
                # refuses it (413); the rest is still on the wire, so the connection ends.
                req.must_close = True
        super().handle_request(listener_name, req, sock, addr)

    def _read_body(self, req: Any, sock: PacedSocket, limit: int) -> bool:
        """Replace ``req.body`` by its bytes, read under the body deadline; False when more
        than ``limit`` bytes came (only ``limit + 1`` are kept)."""
        if req._expected_100_continue:
            # gunicorn would send it in wsgi.create, after the body: too late for a client
            # that waits for it (curl does, for bodies over 1 KiB).
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False
        buffer = io.BytesIO()
        sock.pace(self.web)
        try:
            while buffer.tell() <= limit:
                data = req.body.read(min(READ_STEP, limit + 1 - buffer.tell()))
                if not data:
                    break
                buffer.write(data)
        finally:
            sock.unpace()
        whole = buffer.tell() <= limit
        buffer.seek(0)
        req.body = buffer
        return whole

    @staticmethod
    def _send_quietly(sock: Any, data: bytes, linger: float = 1.0) -> None:
        """Send ``data`` and end our side; then read (and drop) what the client still sends
        for up to ``linger`` s, so that closing does not reset the connection before the
        client has read the answer (a close with unread bytes sends a TCP RST)."""
        deadline = time.monotonic() + linger
        try:
            sock.settimeout(linger)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(65536):
                    break
        except OSError:
            pass  # the client is gone or not reading: closing is all that is left


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit towards ``wanted`` (as far as the hard limit
    allows): each connection is a file descriptor, and 1,024 is a common default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
