"""Fixtures for the admin console's browser tests: the gateway served by gunicorn (two web
workers, so the session must hold across processes), a real delivery worker process, a
local sink server, and Debian's Chromium driven by Playwright.

Everything here is marked ``browser``: ``make test`` skips it, ``make test-browser`` runs
it (installing chromium first when /usr/bin/chromium is missing).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.processes import start_worker, wait_until
from support.servers import SinkServer, served_gateway

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "admin"
CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN_TOKEN = "browser-test-admin-token-at-least-32-characters"
DEADLINE_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


class Gateway:
    """A served gateway, as the browser tests use it."""

    admin_token = ADMIN_TOKEN

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def create_ticket(self, subject: str, email: str = "jane.doe@example.com", priority: str = "medium"
                      ) -> dict[str, Any]:
        body = {"event": "ticket.create", "data": {"subject": subject, "message": "Created by a browser test.",
                                                   "customer_email": email, "priority": priority}}
        response = requests.post(f"{self.base_url}/api/webhooks/receive", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["ticket"]

    def api(self, path: str) -> Any:
        response = requests.get(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    @staticmethod
    def wait_until(condition: Callable[[], Any], what: str) -> Any:
        """Poll until ``condition`` is truthy; fail after a generous deadline."""
        return wait_until(condition, what, DEADLINE_S)


@pytest.fixture
def sink_server() -> Iterator[SinkServer]:
    with SinkServer() as server:
        yield server


@pytest.fixture
def console_sinks(sink_server: SinkServer) -> list[dict[str, Any]]:
    """The served gateway's sinks: one generic webhook sink, ``crm``, pointed at the sink
    server, with no retries, so a failed answer leaves a failed (replayable) delivery. A test
    module overrides this fixture to serve others."""
    return [{"name": "crm", "type": "generic_webhook", "url": sink_server.url, "secret": "crm-signing-secret",
             "events": ["ticket.created", "ticket.resolved"], "retry_schedule": []}]


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str, redis_client: Any, console_sinks: list[dict[str, Any]]
            ) -> Iterator[Gateway]:
    """The gateway with ``console_sinks``, served by gunicorn, and a delivery worker process."""
    config = {
        "gateway": {"admin_token": ADMIN_TOKEN},
        "delivery": {"allow_private_networks": True, "failure_threshold": 50},
        "sinks": console_sinks,
    }
    with served_gateway(tmp_path, redis_url, config) as served:
        worker = start_worker(tmp_path / "gateway.toml", tmp_path / "worker.log", plain=False)
        try:
            yield Gateway(served.url)
        finally:
            worker.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    # Generous deadlines (the machine is shared and noisy): "wait until", never "within".
    expect.set_options(timeout=DEADLINE_S * 1000)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test-browser`, which installs Debian's chromium.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


PHONE = {"width": 390, "height": 844}


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

    def save(page: Any, name: str, phone: bool = False) -> Path:
        """With ``phone``, a second one at a phone's width (``NAME-phone.png``)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if phone:
            size = page.viewport_size
            page.set_viewport_size(PHONE)
            page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
            page.set_viewport_size(size)
        return path

    return save
