"""The receive path served by real gunicorn (``gateway web``), as in production."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from support.servers import ServedGateway, served_gateway

BODY = {"event": "ticket.create", "data": {"subject": "Test Ticket", "message": "This is a test",
                                           "customer_email": "test@example.com"}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServedGateway]:
    with served_gateway(tmp_path_factory.mktemp("gunicorn"), redis_url, {"gateway": {"max_body_bytes": 4096}}) as it:
        yield it


@pytest.fixture
def server(served: ServedGateway, redis_client: Any) -> ServedGateway:
    """The module's server, on a freshly flushed Redis."""
    return served


def test_200_concurrent_creates_get_200_distinct_ticket_numbers(server: ServedGateway, redis_client: Any) -> None:
    def create(i: int) -> tuple[int, str]:
        body = {**BODY, "data": {**BODY["data"], "subject": f"Concurrent {i}"}}
        response = requests.post(server.url + "/api/webhooks/receive", json=body, timeout=60)
        return response.status_code, response.json()["ticket"]["ticket_number"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(create, range(200)))
    assert {status for status, _ in results} == {201}
    numbers = [number for _, number in results]
    assert len(set(numbers)) == 200
    year = numbers[0].split("-")[1]
    assert sorted(numbers) == [f"TKT-{year}-{n:03d}" for n in range(1, 201)]
    assert redis_client.zcard("gw:tickets") == 200


def post_chunked(url: str, chunks: list[bytes], path: str = "/api/webhooks/receive",
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """POST with Transfer-Encoding: chunked (no Content-Length), as streaming clients do."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for chunk in chunks:
            connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_chunked_body_over_the_limit_is_413(server: ServedGateway, redis_client: Any) -> None:
    big = json.dumps({**BODY, "data": {**BODY["data"], "message": "x" * 6000}}).encode()
    status, doc = post_chunked(server.url, [big[i:i + 1000] for i in range(0, len(big), 1000)])
    assert status == 413
    assert doc["error"] == "payload_too_large"
    assert redis_client.zcard("gw:tickets") == 0
    # A chunked body under the limit is read whole and accepted.
    small = json.dumps(BODY).encode()
    status, doc = post_chunked(server.url, [small[:20], small[20:]])
    assert status == 201, doc
    assert doc["ticket"]["subject"] == "Test Ticket"


def test_chunked_body_over_the_limit_is_413_on_the_admin_api_too(server: ServedGateway, redis_client: Any) -> None:
    # werkzeug stops reading a chunked body at the limit; the admin endpoints must refuse it,
    # not parse a silently truncated body.
    big = json.dumps({"event": "ticket.updated", "data": {"padding": "x" * 6000}}).encode()
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    for path in ("/api/events", "/api/sinks/nope/test"):
        status, doc = post_chunked(server.url, [big[i:i + 1000] for i in range(0, len(big), 1000)], path, auth)
        assert (status, doc["error"]) == (413, "payload_too_large"), path
    assert redis_client.zcard("gw:events") == 0


def test_body_over_the_limit_with_content_length_is_413(server: ServedGateway, redis_client: Any) -> None:
    response = requests.post(server.url + "/api/webhooks/receive", timeout=30,
                             json={**BODY, "data": {**BODY["data"], "message": "x" * 6000}})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert redis_client.zcard("gw:tickets") == 0


def test_errors_over_http_are_json(server: ServedGateway) -> None:
    cases = [
        (b"{", "application/json", 400, "malformed_json"),
        (json.dumps(BODY).encode(), "text/plain", 415, "unsupported_media_type"),
        (json.dumps({**BODY, "data": {**BODY["data"], "customer_email": "x"}}).encode(), "application/json",
         422, "validation_failed"),
    ]
    for body, content_type, status, code in cases:
        response = requests.post(server.url + "/api/webhooks/receive", data=body, timeout=30,
                                 headers={"Content-Type": content_type})
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == code


def test_admin_api_over_http(server: ServedGateway) -> None:
    created = requests.post(server.url + "/api/webhooks/receive", json=BODY, timeout=30).json()["ticket"]
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    got = requests.get(f"{server.url}/api/tickets/{created['id']}", headers=auth, timeout=30)
    assert got.json() == {"ticket": created}
    assert requests.get(f"{server.url}/api/tickets/{created['id']}", timeout=30).status_code == 401
    assert requests.get(server.url + "/readyz", timeout=30).json() == {"status": "ready"}
    plugins = requests.get(server.url + "/api/plugins", headers=auth, timeout=30).json()["plugins"]
    assert "gateway.publish.builtin_events" in {p["name"] for p in plugins}


def test_plain_gunicorn_on_gateway_wsgi_app(tmp_path: Any, redis_url: str, redis_client: Any) -> None:
    """`gunicorn -c python:gateway.web.gunicorn_conf 'gateway.web.wsgi:app'` for deployments that
    run gunicorn themselves: each worker builds its app from GATEWAY_CONFIG, and reads requests
    as `gateway web` does (the [web] timeouts: an idle connection is closed, blocking nobody)."""
    import socket
    import sys

    from support.configs import write_config
    from support.processes import DEADLINE_S, GatewayProcess, child_env, free_port, wait_for_http

    config = write_config(tmp_path / "gateway.toml", {"gateway": {"redis_url": redis_url,
                                                                  "data_dir": str(tmp_path / "data")},
                                                      "web": {"header_timeout": 2}})
    port = free_port()
    gunicorn = GatewayProcess.start([sys.executable, "-m", "gunicorn", "-c", "python:gateway.web.gunicorn_conf",
                                     "gateway.web.wsgi:app", "-b", f"127.0.0.1:{port}", "-w", "1"],
                                    tmp_path / "gunicorn.log",
                                    env=child_env(GATEWAY_CONFIG=str(config)), cwd=tmp_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", gunicorn)
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as idle:
            response = requests.post(f"http://127.0.0.1:{port}/api/webhooks/receive", json=BODY, timeout=30)
            assert response.status_code == 201
            assert idle.recv(1) == b""  # closed by the server after header_timeout
        assert redis_client.zcard("gw:tickets") == 1
        assert "Using worker: gateway.web.serving.GatewayWorker" in gunicorn.output()
        assert "slow or idle client can hold" not in gunicorn.output()
    finally:
        gunicorn.stop(timeout=DEADLINE_S)


def test_plain_gunicorn_without_the_config_module_says_what_it_risks(tmp_path: Any, redis_url: str) -> None:
    import sys

    from support.configs import write_config
    from support.processes import DEADLINE_S, GatewayProcess, child_env, free_port, wait_for_http

    config = write_config(tmp_path / "gateway.toml", {"gateway": {"redis_url": redis_url,
                                                                  "data_dir": str(tmp_path / "data")}})
    port = free_port()
    gunicorn = GatewayProcess.start([sys.executable, "-m", "gunicorn", "gateway.web.wsgi:app",
                                     "-b", f"127.0.0.1:{port}", "-w", "1", "--no-control-socket"],
                                    tmp_path / "gunicorn.log",
                                    env=child_env(GATEWAY_CONFIG=str(config)), cwd=tmp_path)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/readyz", gunicorn)
        assert "start gunicorn with -c python:gateway.web.gunicorn_conf" in gunicorn.output()
    finally:
        gunicorn.stop(timeout=DEADLINE_S)


def test_gateway_wsgi_app_refuses_to_start_an_embedded_redis(tmp_path: Any, monkeypatch: Any) -> None:
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    wsgi = importlib.import_module("gateway.web.wsgi")
    monkeypatch.delitem(wsgi.__dict__, "app", raising=False)
    with pytest.raises(RuntimeError, match=r"needs gateway\.redis_url"):
        wsgi.app  # noqa: B018 - the attribute access builds the app
    assert not (tmp_path / ".gateway" / "redis.sock").exists()
