"""A request's head and body in one write (gateway.delivery.wire), seen from a raw socket
server: the first read holds the whole request; bodiless requests still go out whole; the
guarded (SSRF) connections do the same."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from urllib3.connection import HTTPConnection

from gateway.delivery.http_client import OutboundClient
from gateway.delivery.ssrf import GuardedHTTPConnectionPool
from gateway.delivery.wire import (
    REQUEST_TIMEOUT,
    TIMEOUT_SLACK_S,
    OneWriteHTTPConnection,
    OneWriteHTTPConnectionPool,
    SteadyTimeoutSocket,
)
from gateway.sinks import OutgoingRequest

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class FirstReads:
    """A keep-alive HTTP server on 127.0.0.1 that records what each request's first
    ``recv`` returned, reads the rest of the request by its Content-Length and answers 200."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_reads: list[bytes] = []
        self.requests: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            buffer = b""
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.first_reads.append(data)
                buffer += data
                while b"\r\n\r\n" not in buffer:
                    buffer += conn.recv(65536)
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                conn.sendall(ANSWER)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def server() -> Iterator[FirstReads]:
    s = FirstReads()
    yield s
    s.close()


def test_head_and_body_arrive_in_the_first_read(server: FirstReads) -> None:
    body = b'{"event":"ticket.created","data":{"ticket":{"id":"t1"}}}' * 20
    with OutboundClient(allow_private_networks=True) as client:
        for n in range(3):
            request = OutgoingRequest(url=server.url(), body=body, headers={
                "Content-Type": "application/json", "X-Webhook-Delivery": f"dlv_{n}"})
            assert client.send(request, timeout=5).status_code == 200
    assert len(server.requests) == 3
    for n, (first, whole) in enumerate(zip(server.first_reads, server.requests, strict=True)):
        # One write: the first read already holds the head and the whole body.
        assert first == whole
        assert whole.startswith(b"POST /hook HTTP/1.1\r\n")
        assert f"X-Webhook-Delivery: dlv_{n}".encode() in whole
        assert whole.endswith(body)
        assert f"Content-Length: {len(body)}".encode() in whole


def test_a_request_without_a_body_still_goes_out_whole(server: FirstReads) -> None:
    with OutboundClient(allow_private_networks=True) as client:
        assert client.send(OutgoingRequest(url=server.url(), body=b""), timeout=5).status_code == 200
        assert client.send(OutgoingRequest(url=server.url(), body=b"after"), timeout=5).status_code == 200
    assert server.requests[0].startswith(b"POST /hook HTTP/1.1\r\n")
    assert server.requests[0].endswith(b"\r\n\r\n")
    assert server.requests[1].endswith(b"\r\n\r\nafter")


def test_both_pool_kinds_write_once() -> None:
    # The guarded pools (SSRF on) and the plain ones (private networks allowed) both.
    assert issubclass(GuardedHTTPConnectionPool.ConnectionCls, OneWriteHTTPConnectionPool.ConnectionCls)


HEADERS = {"Content-Type": "application/json", "X-Webhook-Delivery": "dlv_1", "X-Name": "Zoë",
           "X-Webhook-Signature": "sha256=" + "ab" * 32}


def _sent_by(connection_class: type, headers: dict[str, str], body: bytes) -> bytes:
    server = FirstReads()
    try:
        conn = connection_class("127.0.0.1", server.port)
        conn.request("POST", "/hook", body=body, headers=headers)
        assert conn.getresponse().status == 200
        conn.close()
        # The Host header names this server's port; everything else must match.
        return server.requests[0].replace(f":{server.port}".encode(), b":PORT")
    finally:
        server.close()


def test_the_request_is_byte_for_byte_urllib3s() -> None:
    # The header lines written by the one-write connection (its own putheader) are the
    # ones urllib3 and http.client write, in the same order.
    body = b'{"event":"ticket.created"}'
    ours = _sent_by(OneWriteHTTPConnection, HEADERS, body)
    theirs = _sent_by(HTTPConnection, HEADERS, body)
    assert ours == theirs
    assert "X-Name: Zoë".encode("latin-1") in ours


@pytest.mark.parametrize("headers", [
    {"X-Injected": "v\r\nX-Evil: 1"},
    {"X-Injected": "v\nX-Evil: 1"},
    {" Leading-Space": "v"},
    {"X-Colon:": "v"},
    {"X-Wide": "€"},  # not latin-1
    {"X-Ünicode": "v"},  # not ascii
])
def test_headers_http_cannot_carry_are_refused_as_http_client_refuses_them(headers: dict[str, str]) -> None:
    refusals = []
    for connection_class in (OneWriteHTTPConnection, HTTPConnection):
        conn = connection_class("127.0.0.1", 9)  # never connects: the head is refused first
        conn.putrequest("POST", "/hook")
        with pytest.raises(ValueError) as caught:
            for name, value in headers.items():
                conn.putheader(name, value)
        refusals.append((type(caught.value), str(caught.value)))
    assert refusals[0] == refusals[1]


def test_steady_socket_sets_a_timeout_only_when_it_changes() -> None:
    left, right = socket.socketpair()
    left.settimeout(5.0)
    steady = SteadyTimeoutSocket.adopt(left)
    try:
        assert steady.gettimeout() == 5.0  # kept across the adoption
        steady.settimeout(5.0 - TIMEOUT_SLACK_S / 2)  # urllib3's "read timeout less elapsed"
        assert steady.gettimeout() == 5.0
        steady.settimeout(0.2)
        assert steady.gettimeout() == 0.2
        with pytest.raises(TimeoutError):  # the descriptor follows: a read times out
            steady.recv(1)
        right.sendall(b"x")
        assert steady.recv(1) == b"x"
        steady.settimeout(None)
        assert steady.gettimeout() is None
        assert steady.getblocking()
    finally:
        steady.close()
        right.close()


def test_kept_alive_plain_connections_use_the_steady_socket(server: FirstReads) -> None:
    pool = OneWriteHTTPConnectionPool("127.0.0.1", server.port, maxsize=1)
    for _ in range(2):
        assert pool.urlopen("POST", "/hook", body=b"x", timeout=5).status == 200
    conn = pool.pool.get()  # type: ignore[union-attr]
    assert isinstance(conn.sock, SteadyTimeoutSocket)
    assert server.requests == [server.requests[0]] * 2
    pool.close()


@pytest.mark.parametrize(("previous", "this_request", "write_timeout"), [
    (30.0, 2.0, 2.0),   # another sink's longer timeout: written within this request's own
    (2.0, 30.0, 2.0),   # the socket's shorter one is kept (no ioctl)
    (30.0, 0.0, 5.0),   # no request timeout known: urllib3's connect timeout, as it sets it
])
def test_a_kept_alive_socket_writes_within_this_requests_timeout(
        server: FirstReads, previous: float, this_request: float, write_timeout: float) -> None:
    conn = OneWriteHTTPConnection("127.0.0.1", server.port, timeout=previous)
    conn.connect()
    try:
        assert isinstance(conn.sock, SteadyTimeoutSocket)
        conn.timeout = min(this_request or 5.0, 5.0)  # what urllib3 sets before a request
        token = REQUEST_TIMEOUT.set(this_request)
        try:
            conn.request("POST", "/hook", body=b"x")
        finally:
            REQUEST_TIMEOUT.reset(token)
        assert conn.sock.gettimeout() == write_timeout
        assert conn.getresponse().status == 200
    finally:
        conn.close()
