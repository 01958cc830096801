"""Idle and slow clients against the real web server (``gateway web``): they must not hold
what other clients need, and the server closes them after its read timeouts ([web])."""

from __future__ import annotations

import json
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.processes import DEADLINE_S, wait_until
from support.servers import ServedGateway, served_gateway

from gateway.signing import hex_signature

SECRET = "slow-clients-test-secret"
TICKET = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Again.",
                                             "customer_email": "ops@example.com"}}
RECEIVE = "/api/webhooks/receive"


def connect(server: ServedGateway) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=DEADLINE_S)


def closed_by_server(sock: socket.socket, timeout: float = DEADLINE_S) -> bytes:
    """Wait until the server closes ``sock``; what it sent before closing."""
    sock.settimeout(timeout)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def still_open(sock: socket.socket) -> bool:
    """True when the server has neither closed ``sock`` nor sent anything on it."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def signed_create(url: str, subject: str) -> requests.Response:
    body = json.dumps({**TICKET, "data": {**TICKET["data"], "subject": subject}}).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": hex_signature(body, SECRET)}
    return requests.post(url + RECEIVE, data=body, headers=headers, timeout=DEADLINE_S)


@pytest.fixture
def one_worker(tmp_path: Path, redis_url: str, redis_client: Any) -> Iterator[ServedGateway]:
    """``gateway web`` with ONE web worker and short read timeouts."""
    config = {"gateway": {"secret": SECRET}, "web": {"header_timeout": 3, "body_timeout": 1, "body_min_rate": 100}}
    with served_gateway(tmp_path, redis_url, config, web_workers=1) as server:
        yield server


def test_an_idle_connection_blocks_nobody_and_is_closed_after_the_header_timeout(one_worker: ServedGateway) -> None:
    idle = connect(one_worker)
    opened = time.monotonic()
    # With gunicorn's sync worker this waited for the idle connection (30 s worker timeout).
    assert signed_create(one_worker.url, "While someone idles").status_code == 201
    assert requests.get(one_worker.url + "/healthz", timeout=DEADLINE_S).json() == {"status": "ok"}
    assert still_open(idle), "the idle connection should still be open: the requests above did not wait for it"
    assert closed_by_server(idle) == b""  # closed without an answer, as nginx does
    assert time.monotonic() - opened >= 3 * 0.9


def test_a_body_sent_too_slowly_gets_408_and_the_connection_is_closed(one_worker: ServedGateway,
                                                                     redis_client: Any) -> None:
    body = json.dumps(TICKET).encode()
    slow = connect(one_worker)
    slow.sendall(f"POST {RECEIVE} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 f"X-Webhook-Signature: {hex_signature(body, SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    answer = b""
    for byte in body:  # 4 bytes a second: under body_min_rate (100 bytes/s) once body_timeout (1 s) is over
        slow.sendall(bytes([byte]))
        if readable(slow, 0.25):
            answer = closed_by_server(slow)
            break
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(payload)["error"] == "request_timeout"
    assert redis_client.zcard("gw:tickets") == 0
    # The same request at a normal pace is accepted.
    assert signed_create(one_worker.url, TICKET["data"]["subject"]).status_code == 201


def readable(sock: socket.socket, timeout: float) -> bool:
    """True when the server sent something (or closed ``sock``) within ``timeout`` s."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def test_expect_100_continue_is_answered_before_the_body(one_worker: ServedGateway) -> None:
    # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits (1 s) for the 100:
    # the server reads bodies before the application runs, so it must say 100 itself.
    body = json.dumps({**TICKET, "data": {**TICKET["data"], "message": "x" * 2000}}).encode()
    sock = connect(one_worker)
    sock.sendall(f"POST {RECEIVE} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 f"X-Webhook-Signature: {hex_signature(body, SECRET)}\r\nContent-Length: {len(body)}\r\n"
                 "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(body)
    head = closed_by_server(sock).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 201 ")


# -- many idle and slow clients (make test-slow) -----------------------------------------------------------


class SlowClients:
    """``idle`` connections that send nothing and ``slow`` ones that send a byte a second (half
    of them in their headers, half in a body), all watched from one thread, which notes when
    the server closes each one."""

    def __init__(self, server: ServedGateway, idle: int, slow: int) -> None:
        self.sockets: list[socket.socket] = []
        self.slow: dict[socket.socket, bytes] = {}
        self.closed: dict[socket.socket, tuple[float, bytes]] = {}
        headers = f"POST {RECEIVE} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        for index in range(idle + slow):
            sock = connect(server)
            self.sockets.append(sock)
            if index >= idle:
                in_body = index % 2 == 0
                if in_body:
                    sock.sendall((headers + "Content-Length: 100000\r\n\r\n").encode())
                self.slow[sock] = (b"{" * 100_000) if in_body else headers.encode()
        self.opened = time.monotonic()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self.sockets:
                selector.register(sock, selectors.EVENT_READ)
            next_byte = time.monotonic()
            while not self.stop.is_set() and len(self.closed) < len(self.sockets):
                for key, _ in selector.select(timeout=0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    selector.unregister(sock)
                    self.closed[sock] = (time.monotonic() - self.opened, self._drain(sock))
                if time.monotonic() >= next_byte:
                    next_byte += 1.0
                    for sock, pending in list(self.slow.items()):
                        if sock not in self.closed and pending:
                            try:
                                sock.send(pending[:1])
                            except OSError:
                                continue  # closed by the server: the selector reports it
                            self.slow[sock] = pending[1:]

    @staticmethod
    def _drain(sock: socket.socket) -> bytes:
        sock.settimeout(5)
        try:
            return closed_by_server(sock, timeout=5)
        except OSError:
            return b""  # reset by the server

    def close(self) -> None:
        self.stop.set()
        self.thread.join(DEADLINE_S)
        for sock in self.sockets:
            sock.close()


def median_latency(requests_: list[Callable[[], requests.Response]], expected: list[int]) -> float:
    timings = []
    for send, status in zip(requests_, expected, strict=True):
        started = time.perf_counter()
        response = send()
        timings.append(time.perf_counter() - started)
        assert response.status_code == status, response.text
    return statistics.median(timings)


@pytest.mark.slow
def test_200_idle_and_50_byte_a_second_clients_do_not_delay_others(tmp_path: Path, redis_url: str,
                                                                   redis_client: Any) -> None:
    timeout = 15.0
    config = {"gateway": {"secret": SECRET}, "web": {"header_timeout": timeout, "body_timeout": timeout}}
    with served_gateway(tmp_path, redis_url, config, web_workers=2) as server:
        def load(label: str) -> tuple[float, float]:
            creates = [lambda i=i: signed_create(server.url, f"{label} {i}") for i in range(20)]
            checks = [lambda: requests.get(server.url + "/healthz", timeout=DEADLINE_S) for _ in range(20)]
            return median_latency(creates, [201] * 20), median_latency(checks, [200] * 20)

        load("warm-up")
        before_create, before_health = load("before")
        clients = SlowClients(server, idle=200, slow=50)
        try:
            time.sleep(2)  # the slow ones have sent a byte or two; nobody has been closed yet
            during_create, during_health = load("during")
            measured_at = time.monotonic() - clients.opened
            # Generous slack for a shared machine: with sync workers these requests waited
            # for the slow clients (tens of seconds), not a few milliseconds more.
            assert during_create / before_create < 5, (before_create, during_create)
            assert during_health / before_health < 5, (before_health, during_health)
            assert not clients.closed or min(at for at, _ in clients.closed.values()) > measured_at, \
                "the slow clients must still be connected while the others are measured"

            wait_until(lambda: len(clients.closed) == 250, "the server to close every idle and slow client")
        finally:
            clients.close()
        assert min(at for at, _ in clients.closed.values()) >= timeout * 0.9
        answers = {sock: answer for sock, (_, answer) in clients.closed.items()}
        in_body = [sock for sock, pending in clients.slow.items() if len(pending) > 1000]
        assert len(in_body) == 25
        assert {answers[sock][:13] for sock in in_body} == {b"HTTP/1.1 408 "}
        assert {answer for sock, answer in answers.items() if sock not in in_body} == {b""}
        assert redis_client.zcard("gw:tickets") == 60
