"""Local HTTP servers for tests, all real sockets on 127.0.0.1:

* :class:`SinkServer`: a sink that records requests and answers from a script (and counts
  how many requests it holds at once).
* :class:`Destination`: a receiver on a fixed port that can go down (connections refused)
  and come back, for the reliability tests.
* :class:`LocalServer`: a bare HTTP(S) server with one handler per path that counts TCP
  connections, for the outbound client's tests (:func:`post` makes their requests,
  :func:`self_signed_tls` the server's TLS).
* :func:`served_gateway`: the gateway itself served by gunicorn (``python -m gateway web``).

(:class:`gateway.testing.RecordingSink`, the ``recording_sink`` fixture, is the public
relative of :class:`SinkServer`.)
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from gateway.sinks import OutgoingRequest
from support.configs import write_config
from support.processes import DEADLINE_S, ServedProcess, free_port, start_gateway

# The guide's "Test Incoming Webhook" curl body, byte for byte.
GUIDE_CURL_BODY = b"""{
    "event": "ticket.create",
    "data": {
      "subject": "Test Ticket",
      "message": "This is a test",
      "customer_email": "test@example.com"
    }
  }"""


# -- a sink with scripted answers ----------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """One scripted answer; ``delay`` seconds before answering (a slow sink)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int = 0
    """The status it was answered with."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class SinkServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script
    (then with ``default``). ``rule(received)``, when set, is asked first: an Answer to give,
    or None for the script's (a receiver that treats some tickets differently)."""

    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer()
        self.rule: Callable[[Received], Answer | None] | None = None
        self.script: collections.deque[Answer] = collections.deque()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server.lock:
                    received = Received(self.path, dict(self.headers.items()), body, time.time())
                    server.received.append(received)
                    answer = server.rule(received) if server.rule is not None else None
                    if answer is None:
                        answer = server.script.popleft() if server.script else server.default
                    received.answered = answer.status
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                if answer.delay:
                    time.sleep(answer.delay)
                with server.lock:
                    server.active -= 1
                try:
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def answer(self, *answers: Answer) -> SinkServer:
        self.script.extend(answers)
        return self

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- a destination that goes down and comes back -------------------------------------------------


@dataclasses.dataclass
class Arrival:
    delivery_id: str
    ticket_id: str
    at: float
    status: int
    event: str = ""


class _QuietServer(ThreadingHTTPServer):
    """Keeps track of its open connections, so that going down drops the keep-alive ones
    too (as a crashed receiver would), not only the listening socket."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections, self.open_connections = self.open_connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker killed mid-request resets its connection: expected here, not news


class Destination:
    """A real HTTP receiver on a fixed 127.0.0.1 port that records every request.

    ``delay`` (a range, seconds) keeps requests in flight for a while, so that kills hit
    deliveries mid-attempt. :meth:`go_down` closes the listening socket (connections are
    refused) and :meth:`come_back` listens on the same port again. ``answers`` is a queue of
    scripted (status, headers) replies used before the default 200; past them, each request
    is answered 500 with probability ``failure_rate``.
    """

    def __init__(self, delay: tuple[float, float] = (0.0, 0.0), failure_rate: float = 0.0) -> None:
        self.delay = delay
        self.failure_rate = failure_rate
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._server: _QuietServer | None = None
        self.come_back()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                    ticket_id, event = doc["data"]["ticket"]["id"], doc["event"]
                except (ValueError, KeyError, TypeError):
                    ticket_id, event = "", ""
                # Recorded when the request arrives, before answering: an attempt whose
                # worker is killed while waiting for the answer still shows here.
                with owner.lock:
                    if owner.answers:
                        status, headers = owner.answers.pop(0)
                    else:
                        status, headers = (500 if random.random() < owner.failure_rate else 200), {}
                    owner.arrivals.append(
                        Arrival(self.headers.get("X-Webhook-Delivery", ""), ticket_id, time.time(), status, event)
                    )
                if owner.delay[1] > 0:
                    time.sleep(random.uniform(*owner.delay))
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def go_down(self) -> None:
        """Stop listening: from now on connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()

    def come_back(self) -> None:
        """Listen again on the same port."""
        deadline = time.monotonic() + 30
        while True:
            try:
                server = _QuietServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def script(self, *answers: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.answers.extend(answers)

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def delivered_tickets(self) -> set[str]:
        return {a.ticket_id for a in self.snapshot() if 200 <= a.status < 300}


# -- a bare server for the outbound client -------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """A real HTTP/1.1 server (HTTPS with ``tls``) on 127.0.0.1 that counts the TCP connections it accepts and
    records each request's path and headers (names lowercased). ``routes`` maps a path to a handler."""

    def __init__(self, routes: dict[str, Route], tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()  # lets sleeping handlers finish at teardown
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs make every answer ~40 ms

            def setup(self) -> None:
                super().setup()
                with lock:
                    server.connections += 1

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                routes.get(self.path, answer(404, b"no such route"))(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Route:
    """A route that answers ``status`` with ``body`` and a Content-Length."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def post(url: str, headers: dict[str, str] | None = None) -> OutgoingRequest:
    """A small JSON POST to ``url``, as a sink would render it."""
    return OutgoingRequest(url=url, body=b'{"event":"ticket.created"}', headers=headers or {})


def self_signed_tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1 and
    localhost, and the certificate's path (a CA bundle that trusts it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


# -- the gateway, served by gunicorn -------------------------------------------------------------


@dataclasses.dataclass
class ServedGateway(ServedProcess):
    admin_token: str = ""


@contextmanager
def served_gateway(tmp_path: Path, redis_url: str, config: Mapping[str, Any] | None = None,
                   web_workers: int = 2) -> Iterator[ServedGateway]:
    """``python -m gateway web`` on a free port with ``config`` (on the test Redis)."""
    config = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in (config or {}).items()}
    gateway = config.setdefault("gateway", {})
    gateway.setdefault("redis_url", redis_url)
    gateway.setdefault("data_dir", str(tmp_path / "data"))
    gateway.setdefault("admin_token", "test-admin-token-0123456789abcdef")
    path = write_config(tmp_path / "gateway.toml", config)
    started = start_gateway(tmp_path, "web", "--config", str(path), "--web-workers", str(web_workers),
                            ready_path="/healthz")
    try:
        yield ServedGateway(started.process, started.log_path, started.url, gateway["admin_token"])
    finally:
        started.stop(timeout=DEADLINE_S)
