"""Fixtures for the admin console's browser tests: a real gateway (gunicorn, 2 web workers),
a real worker process, a local sink server, and Debian's Chromium driven by Playwright.

Everything here is marked ``browser``: ``make test`` skips it, ``make test-browser`` runs
it (installing chromium first when /usr/bin/chromium is missing).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "admin"
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN_TOKEN = "browser-test-admin-token"
DEADLINE_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class SinkServer:
    """A local HTTP receiver. It answers each request with the next status in ``answers``
    (then 200 once they run out) and records what it received."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server.lock:
                    status = server.answers.pop(0) if server.answers else 200
                    server.received.append({"headers": dict(self.headers), "body": body, "status": status})
                payload = b"ok" if status < 300 else b"receiver is down for maintenance"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/crm"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["status"] < 300]


@pytest.fixture
def sink_server() -> Iterator[SinkServer]:
    server = SinkServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process in its own session, with its output kept in a file for failures."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=log_dir,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


class Gateway:
    """A gateway served by gunicorn plus one delivery worker, both real processes."""

    admin_token = ADMIN_TOKEN

    def __init__(self, base_url: str, config_path: Path, processes: list[Process]) -> None:
        self.base_url = base_url
        self.config_path = config_path
        self.processes = processes

    def create_ticket(self, subject: str) -> dict[str, Any]:
        body = {"event": "ticket.create", "data": {"subject": subject, "message": "Created by a browser test.",
                                                   "customer_email": "jane.doe@example.com"}}
        response = requests.post(f"{self.base_url}/api/webhooks/receive", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["ticket"]

    @staticmethod
    def wait_until(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
        """See :func:`wait_until`."""
        return wait_until(condition, what, timeout)

    def api(self, path: str) -> Any:
        response = requests.get(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str, redis_client: Any, sink_server: SinkServer) -> Iterator[Gateway]:
    """The gateway configured with one generic webhook sink, ``crm``, pointed at the sink
    server. It has no retries, so a failed answer leaves a failed (replayable) delivery."""
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(f"""
[gateway]
redis_url = {json.dumps(redis_url)}
admin_token = {json.dumps(ADMIN_TOKEN)}
data_dir = {json.dumps(str(tmp_path / "data"))}

[delivery]
allow_private_networks = true
failure_threshold = 50

[[sinks]]
name = "crm"
type = "generic_webhook"
url = {json.dumps(sink_server.url)}
secret = "crm-signing-secret"
events = ["ticket.created", "ticket.resolved"]
retry_schedule = []
""", encoding="utf-8")
    port = free_port()
    env = {**os.environ, "GATEWAY_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1"}
    env.pop("GATEWAY_REDIS_URL", None)
    gateway_cmd = [sys.executable, "-m", "gateway"]
    processes = [
        Process("web", gateway_cmd + ["web", "--config", str(config_path), "--host", "127.0.0.1",
                                      "--port", str(port), "--web-workers", "2"], tmp_path, env),
        Process("worker", gateway_cmd + ["worker", "--config", str(config_path)], tmp_path, env),
    ]
    base_url = f"http://127.0.0.1:{port}"
    try:
        def web_up() -> bool:
            for process in processes:
                if process.popen.poll() is not None:
                    raise AssertionError(f"{process.name} exited:\n{process.output()}")
            try:
                return requests.get(f"{base_url}/admin/signin", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(web_up, "the gateway to serve /admin/signin")
        yield Gateway(base_url, config_path, processes)
    finally:
        for process in processes:
            process.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-browser`, which installs Debian's chromium.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(DEADLINE_S * 1000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, name)``: a full-page PNG under test-artifacts/admin/ (gitignored)."""

    def save(page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
