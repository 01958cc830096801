"""``gateway run`` (embedded Redis, gunicorn and delivery workers under one supervisor) and
``gateway web``, as real processes: they serve, deliver, restart what crashes and leave
nothing running when they stop."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from support.configs import write_config
from support.processes import (
    DEADLINE_S,
    alive,
    descendants,
    direct_children,
    gateway_command,
    process_tree,
    start_gateway,
)
from support.servers import GUIDE_CURL_BODY

from gateway.storage.connection import connect

pytestmark = pytest.mark.usefixtures("no_ambient_config")


# -- gateway run: everything together -----------------------------------------------------------

class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    handler = type("Recorder", (Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    finally:
        server.shutdown()
        server.server_close()


def run_gateway(cwd: Path) -> Any:
    """``gateway run`` with one web and one delivery worker, in ``cwd`` (no --config:
    ./gateway.toml if there is one, as after ``make run``)."""
    return start_gateway(cwd, "run", "--web-workers", "1", "--workers", "1")


def test_gateway_run_serves_delivers_and_stops_everything(tmp_path: Path, receiver: Any) -> None:
    sink_url, received = receiver
    secret = "guide-secret"
    write_config(tmp_path / "gateway.toml", {
        "gateway": {"secret": secret},
        "delivery": {"allow_private_networks": True},
        "sinks": [{"name": "local", "type": "generic_webhook", "url": sink_url, "events": ["ticket.created"],
                   "secret": "sink-secret"}],
    })
    run = run_gateway(tmp_path)
    try:
        unsigned = requests.post(run.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY,
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert unsigned.status_code == 401
        signature = hmac.new(secret.encode(), GUIDE_CURL_BODY, hashlib.sha256).hexdigest()
        created = requests.post(run.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY, timeout=10,
                                headers={"Content-Type": "application/json", "X-Webhook-Signature": signature})
        assert created.status_code == 201, created.text
        ticket = created.json()["ticket"]
        assert ticket["subject"] == "Test Ticket" and ticket["status"] == "new"

        deadline = time.monotonic() + DEADLINE_S
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, f"the sink received nothing within {DEADLINE_S}s:\n{run.output()}"
        headers, delivered = received[0]
        assert json.loads(delivered)["data"]["ticket"]["ticket_number"] == ticket["ticket_number"]
        assert headers["X-Webhook-Signature"] == hmac.new(b"sink-secret", delivered, hashlib.sha256).hexdigest()

        banner = run.output()
        assert run.url in banner
        assert "local (generic_webhook)" in banner
        embedded = connect(f"unix://{tmp_path / '.gateway' / 'redis.sock'}")
        assert embedded.config_get("appendonly") == {"appendonly": "yes"}
        embedded.close()
        token = (tmp_path / ".gateway" / "admin_token").read_text().strip()
        assert token not in banner
        listed = requests.get(run.url + "/api/tickets", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert [t["id"] for t in listed.json()["tickets"]] == [ticket["id"]]

        started = descendants(run.process.pid)
        assert len(started) >= 4  # redis, gunicorn master + worker, delivery worker
    finally:
        code = run.stop(signal.SIGINT, DEADLINE_S)
    assert code == 0, run.output()
    assert [pid for pid in started if alive(pid)] == [], run.output()


def test_gateway_run_restarts_a_crashed_worker(tmp_path: Path) -> None:
    run = run_gateway(tmp_path)
    try:
        # Direct children only: a worker may have processes of its own (rq's scheduler).
        deadline = time.monotonic() + DEADLINE_S
        while not direct_children(run.process.pid, b"worker") and time.monotonic() < deadline:
            time.sleep(0.1)
        [first] = direct_children(run.process.pid, b"worker")
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and direct_children(run.process.pid, b"worker") in ([], [first]):
            time.sleep(0.1)
        assert direct_children(run.process.pid, b"worker") not in ([], [first]), run.output()
        assert "worker-1 exited with code -9; restarting" in run.output()
        assert run.process.poll() is None
    finally:
        assert run.stop(signal.SIGTERM, DEADLINE_S) == 0, run.output()


def test_gateway_run_stops_everything_when_the_web_server_dies(tmp_path: Path) -> None:
    run = run_gateway(tmp_path)
    try:
        started = descendants(run.process.pid)
        [web] = direct_children(run.process.pid, b"web")
        os.kill(web, signal.SIGKILL)
        assert run.process.wait(DEADLINE_S) == 1
    finally:
        run.stop(timeout=DEADLINE_S)
    assert "web exited with code -9; stopping everything" in run.output()
    assert [pid for pid in started if alive(pid)] == [], run.output()


def test_gateway_web_alone_with_the_embedded_redis(tmp_path: Path) -> None:
    web = start_gateway(tmp_path, "web", "--web-workers", "2")
    try:
        created = requests.post(web.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY, timeout=10,
                                headers={"Content-Type": "application/json"})
        assert created.status_code == 201
        started = descendants(web.process.pid)
    finally:
        code = web.stop(signal.SIGTERM, DEADLINE_S)
    assert code == 0, web.output()
    assert [pid for pid in started if alive(pid)] == [], web.output()
    # The embedded Redis kept the ticket (append-only file): a new server on the same data sees it.
    from gateway.storage.connection import EmbeddedRedis

    again = EmbeddedRedis(tmp_path / ".gateway").start()
    try:
        assert connect(again.url).zcard("gw:tickets") == 1
    finally:
        again.stop()


def test_a_command_that_starts_the_embedded_redis_stops_it(tmp_path: Path) -> None:
    # `gateway deliveries` outside `gateway run`: it may start the embedded Redis to read the
    # data under .gateway/, but no redis-server may outlive the command.
    result = gateway_command("deliveries", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    marker = str(tmp_path).encode()
    lingering = [entry.name for entry in Path("/proc").iterdir()
                 if entry.name.isdigit() and alive(int(entry.name)) and _cmdline_has(entry, marker)]
    assert lingering == []


def _cmdline_has(proc_entry: Path, marker: bytes) -> bool:
    try:
        return marker in (proc_entry / "cmdline").read_bytes()
    except OSError:
        return False


def test_gateway_run_restarts_the_embedded_redis_with_its_data(tmp_path: Path) -> None:
    run = run_gateway(tmp_path)
    try:
        first = requests.post(run.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY, timeout=10,
                              headers={"Content-Type": "application/json"})
        assert first.status_code == 201
        [redis_pid] = [pid for pid in process_tree().get(run.process.pid, [])
                       if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(redis_pid, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE_S
        second = None
        while time.monotonic() < deadline:
            second = requests.post(run.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY, timeout=10,
                                   headers={"Content-Type": "application/json"})
            if second.status_code == 201:
                break
            assert second.status_code == 503  # meanwhile: unavailable, never a 500
            time.sleep(0.2)
        assert second is not None and second.status_code == 201, run.output()
        # With the default embedded_fsync = "always" Redis writes and fsyncs the append-only
        # file before it replies, so a killed server has lost nothing it acknowledged.
        assert "embedded Redis exited with code -9; restarting it" in run.output()
        token = (tmp_path / ".gateway" / "admin_token").read_text().strip()
        ids = [t["id"] for t in requests.get(run.url + "/api/tickets", timeout=10,
                                             headers={"Authorization": f"Bearer {token}"}).json()["tickets"]]
        assert first.json()["ticket"]["id"] in ids
    finally:
        assert run.stop(signal.SIGINT, DEADLINE_S) == 0, run.output()
