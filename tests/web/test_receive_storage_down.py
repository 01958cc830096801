"""Redis unavailable: the receive endpoint answers 503 with Retry-After, never a 201 for
what was not stored and never a 500; once Redis is back nothing is half-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.processes import free_port

from gateway.config import parse_config
from gateway.plugins import load_plugins
from gateway.runtime import Runtime
from gateway.storage.connection import EmbeddedRedis, connect
from gateway.web.app import create_app

URL = "/api/webhooks/receive"
BODY = {"event": "ticket.create", "data": {"subject": "Test Ticket", "message": "This is a test",
                                           "customer_email": "test@example.com"}}


def client_for(redis_url: str, data_dir: Path) -> Any:
    plugins = load_plugins()
    settings = parse_config({"gateway": {"redis_url": redis_url, "data_dir": str(data_dir)}}, plugins)
    app = create_app(Runtime.from_settings(settings, plugins))
    app.testing = True
    return app.test_client()


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"] == "storage_unavailable"
    # Redis could not be reached, so nothing went out: the answer may say nothing was stored
    # (a reply lost after the write went out says it may exist: test_receive_group_commit.py).
    assert "nothing was stored" in response.get_json()["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_redis_stopped_then_restarted(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()
    try:
        client = client_for(server.url, tmp_path / "data")
        first = client.post(URL, json=BODY)
        assert first.status_code == 201
        server.stop()

        assert_unavailable(client.post(URL, json=BODY))
        assert_unavailable(client.post(URL, json=BODY, headers={"Idempotency-Key": "k-1"}))
        assert_unavailable(client.get("/readyz"))
        assert client.get("/healthz").status_code == 200

        server.start()
        stored = connect(server.url)
        # Exactly what was acknowledged: one ticket, its event, the sequence at 1.
        assert stored.zcard("gw:tickets") == 1
        assert stored.zcard("gw:events") == 1
        assert stored.get(f"gw:ticket_seq:{first.get_json()['ticket']['created_at'][:4]}") == b"1"
        assert stored.get("gw:ticket:" + first.get_json()["ticket"]["id"]) is not None
        assert client.get("/readyz").status_code == 200
        again = client.post(URL, json=BODY, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 201  # the key was not remembered by the failed attempt
        assert again.get_json()["ticket"]["ticket_number"].endswith("-002")
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}/0", "unix://{tmp}/nothing-here.sock"])
def test_redis_never_reachable(tmp_path: Path, url: str) -> None:
    client = client_for(url.format(port=free_port(), tmp=tmp_path), tmp_path / "data")
    assert_unavailable(client.post(URL, json=BODY))
    assert_unavailable(client.get("/readyz"))
    token = (tmp_path / "data" / "admin_token").read_text().strip()
    assert_unavailable(client.get("/api/tickets", headers={"Authorization": f"Bearer {token}"}))
    assert client.get("/healthz").get_json() == {"status": "ok"}
