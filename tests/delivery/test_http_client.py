"""The outbound client against real local HTTP servers: keep-alive, timeouts, refused
connections, redirects not followed, big bodies cut, errors that leak nothing."""

from __future__ import annotations

import base64
import gzip
import shutil
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from support.servers import LocalServer, Route, answer, post, self_signed_tls

from gateway.delivery.http_client import (
    MAX_RESPONSE_BYTES,
    DeliveryError,
    OutboundClient,
    parse_retry_after,
    retry_after,
)
from gateway.sinks import Response


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def local_server() -> Iterator[Callable[[dict[str, Route]], LocalServer]]:
    """Start LocalServers for a test; all stopped afterwards."""
    started: list[LocalServer] = []

    def start(routes: dict[str, Route]) -> LocalServer:
        server = LocalServer(routes)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client() -> Iterator[OutboundClient]:
    """A client with the SSRF guard off, since every test server is on 127.0.0.1."""
    with OutboundClient(allow_private_networks=True) as c:
        yield c


def test_sequential_requests_reuse_one_keep_alive_connection(client: OutboundClient, local_server) -> None:
    server = local_server({"/hook": answer(200, b"thanks")})
    responses = [client.send(post(server.url("/hook")), timeout=10) for _ in range(5)]
    assert [(r.status_code, r.body) for r in responses] == [(200, b"thanks")] * 5
    assert len(server.requests) == 5
    assert server.connections == 1


def test_many_threads_share_one_client(local_server) -> None:
    server = local_server({"/hook": answer(204)})
    with OutboundClient(allow_private_networks=True, max_pool_per_host=8) as shared, \
            ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: shared.send(post(server.url("/hook")), 10).status_code, range(160)))
    assert statuses == [204] * 160
    assert len(server.requests) == 160
    # Pooled: far fewer connections than requests (extra ones only under contention).
    assert server.connections < 160


def test_redirect_is_returned_not_followed(client: OutboundClient, local_server) -> None:
    server = local_server({"/old": answer(302, b"", {"Location": "/new"}), "/new": answer(200, b"moved here")})
    response = client.send(post(server.url("/old")), timeout=10)
    assert response.status_code == 302
    assert response.header("location") == "/new"
    assert server.paths == ["/old"]


def test_big_response_body_is_cut_and_the_client_carries_on(client: OutboundClient, local_server) -> None:
    big = b"x" * (5 * MAX_RESPONSE_BYTES)
    server = local_server({"/big": answer(200, big), "/small": answer(200, b"small")})
    response = client.send(post(server.url("/big")), timeout=10)
    assert response.status_code == 200
    assert response.body == big[:MAX_RESPONSE_BYTES]
    # The unread rest was dropped with its connection; the next request still works.
    assert client.send(post(server.url("/small")), timeout=10).body == b"small"


def test_slow_server_is_a_timeout(client: OutboundClient, local_server) -> None:
    def never_answers(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(60)

    server = local_server({"/slow": never_answers})
    with pytest.raises(DeliveryError) as caught:
        client.send(post(server.url("/slow")), timeout=0.5)
    assert caught.value.code == "timeout"
    assert f"127.0.0.1:{server.port} did not answer within 0.5 s" in caught.value.message


def test_refused_connection_is_a_connect_error(client: OutboundClient) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError) as caught:
        client.send(post(f"http://127.0.0.1:{port}/hook"), timeout=5)
    assert caught.value.code == "connect_error"
    assert caught.value.message == f"Cannot connect to 127.0.0.1:{port}: Connection refused."


def test_errors_never_show_credentials_or_the_path(client: OutboundClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeliveryError) as caught:
        client.send(post(f"http://admin:hunter2@127.0.0.1:{port}/services/T0/B0/sEcReTtOkEn?key=k3y"), timeout=5)
    shown = f"{caught.value!s} {caught.value!r} {caught.value.message}"
    for secret in ("hunter2", "admin", "sEcReTtOkEn", "k3y"):
        assert secret not in shown


def test_credentials_in_the_url_become_basic_auth(client: OutboundClient, local_server) -> None:
    server = local_server({"/hook": answer(200)})
    client.send(post(f"http://ops:p%40ss@127.0.0.1:{server.port}/hook"), timeout=10)
    _, headers = server.requests[0]
    assert headers["authorization"] == "Basic " + base64.b64encode(b"ops:p@ss").decode()


def test_header_injection_is_refused_without_echoing_the_value(client: OutboundClient, local_server) -> None:
    server = local_server({"/hook": answer(200)})
    with pytest.raises(DeliveryError) as caught:
        client.send(post(server.url("/hook"), {"X-Token": "s3cret\r\nX-Injected: yes"}), timeout=10)
    assert caught.value.code == "invalid_request"
    assert "s3cret" not in caught.value.message
    assert server.requests == []


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "file:///etc/passwd", "not a url", "http://:80/x"])
def test_only_http_urls_with_a_host_are_sent(client: OutboundClient, url: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        client.send(post(url), timeout=5)
    assert caught.value.code == "invalid_url"


def test_tls_to_a_plain_http_server_is_a_tls_error(client: OutboundClient, local_server) -> None:
    server = local_server({"/hook": answer(200)})
    with pytest.raises(DeliveryError) as caught:
        client.send(post(f"https://127.0.0.1:{server.port}/hook"), timeout=10)
    assert caught.value.code == "tls_error"


def test_an_untrusted_certificate_is_a_tls_error(client: OutboundClient, tls) -> None:
    server = LocalServer({"/hook": answer(200)}, tls=tls[0])
    try:
        with pytest.raises(DeliveryError) as caught:
            client.send(post(f"https://127.0.0.1:{server.port}/hook"), timeout=10)
    finally:
        server.stop()
    assert caught.value.code == "tls_error"
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert server.requests == []


def test_oversized_response_headers_are_too_large(client: OutboundClient, local_server) -> None:
    server = local_server({"/hook": answer(200, b"", {"X-Huge": "h" * 70_000})})
    with pytest.raises(DeliveryError) as caught:
        client.send(post(server.url("/hook")), timeout=10)
    assert caught.value.code == "too_large"


def test_closed_client_refuses_to_send(local_server) -> None:
    server = local_server({"/hook": answer(200)})
    closed = OutboundClient(allow_private_networks=True)
    closed.close()
    with pytest.raises(RuntimeError):
        closed.send(post(server.url("/hook")), timeout=5)


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("7", NOW + timedelta(seconds=7)),
    (" 120 ", NOW + timedelta(seconds=120)),
    ("0", NOW),
    ("Sun, 01 Mar 2026 12:00:30 GMT", NOW + timedelta(seconds=30)),
    ("Sunday, 01-Mar-26 12:01:00 GMT", NOW + timedelta(seconds=60)),
    ("Sat, 28 Feb 2026 12:00:00 GMT", NOW),  # in the past: now
    (None, None), ("", None), ("soon", None), ("-5", None), ("1.5", None),
    ("³", None), ("٣", None),  # digits to str.isdigit() (and int(), for the second), not to HTTP
])
def test_parse_retry_after(value: str | None, expected: datetime | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_is_capped() -> None:
    response = Response(status_code=429, headers={"retry-after": "999999"}, body=b"")
    assert retry_after(response, cap=3600, now=NOW) == NOW + timedelta(hours=1)
    assert retry_after(Response(503, {"Retry-After": "7"}, b""), cap=3600, now=NOW) == NOW + timedelta(seconds=7)
    assert retry_after(Response(503, {}, b""), cap=3600, now=NOW) is None


def test_a_kept_alive_connection_takes_a_shorter_timeout(client: OutboundClient, local_server) -> None:
    # The second request reuses the first one's connection (and socket): its own, shorter
    # timeout must hold, not the one the socket was left with (test_wire checks the socket's
    # timeout itself; this is the whole path, which the deadline also guards).
    def late(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(3)
        answer(200, b"late")(handler)

    server = local_server({"/hook": answer(200, b"ok"), "/late": late})
    assert client.send(post(server.url("/hook")), timeout=60).status_code == 200
    with pytest.raises(DeliveryError) as caught:
        client.send(post(server.url("/late")), timeout=0.5)
    assert caught.value.code == "timeout"
    assert server.connections == 1


def test_a_compressed_answer_is_read_whole(client: OutboundClient, local_server) -> None:
    # All its bytes arrive with the first read, but decoded it is larger than one read
    # returns: it must still come out whole, not cut where its Content-Length was reached.
    text = b"thanks, " * 5000
    server = local_server({"/hook": answer(200, gzip.compress(text), {"Content-Encoding": "gzip"}),
                           "/plain": answer(200, b"plain")})
    assert client.send(post(server.url("/hook")), timeout=10).body == text
    assert client.send(post(server.url("/plain")), timeout=10).body == b"plain"
    assert server.connections == 1
