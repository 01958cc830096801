"""The Zapier CLI app of docs/zapier.md, built from the page's code blocks, run by Zapier's
own app tester (``zapier-platform-core``, under Node) against a live gateway: a web process
and a worker process. The connection test, subscribe, the sample items, the Create ticket
form and action (deduplicated), the live delivery turned into an item with a stable ``id``
whose keys equal the sample's, and unsubscribing twice (``zapier-app/live-test.js``).

Needs ``node`` and ``zapier-platform-core`` (``npm install`` in ``plugins/zapier/zapier-app``,
or ``ZAPIER_NODE_MODULES`` naming a ``node_modules`` directory that has it); skipped
otherwise, saying so."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import tomli_w

from gateway.testing import wait_until

APP = Path(__file__).resolve().parents[1] / "zapier-app"
DOC = Path(__file__).resolve().parents[3] / "docs" / "zapier.md"
KEY, LABEL = "zk_" + "z" * 29, "zap-tester"
TIMEOUT_S = 300


def node_modules() -> Path | None:
    for candidate in (os.environ.get("ZAPIER_NODE_MODULES"), str(APP / "node_modules")):
        if candidate and (Path(candidate) / "zapier-platform-core" / "package.json").exists():
            return Path(candidate)
    return None


pytestmark = pytest.mark.skipif(shutil.which("node") is None or node_modules() is None,
                                reason="needs node and zapier-platform-core (npm install in plugins/zapier/zapier-app)")


def app_from_the_docs() -> str:
    """index.js: the javascript blocks of the page's 'The Zapier app' section, in order."""
    section = DOC.read_text(encoding="utf-8").split("## The Zapier app", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```javascript\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 4, "docs/zapier.md's app is four code blocks"
    return "'use strict';\n\n" + "\n".join(blocks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_gateway(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """``gateway web`` and ``gateway worker`` processes with a zapier sink."""
    config = tmp_path / "gateway.toml"
    config.write_text(tomli_w.dumps({
        "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"),
                    "admin_token": "app-tester-admin-0123456789abcde",
                    "public_url": "https://support.example.com"},
        "delivery": {"allow_private_networks": True},
        "sinks": [{"name": "zapier", "type": "zapier", "api_keys": [{"label": LABEL, "key": KEY}],
                   "events": ["ticket.created", "ticket.resolved", "feedback.received"]}]}), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PYTEST_")) and k != "REDIS_URL"}
    env["GATEWAY_CONFIG"] = str(config)
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    for name, argv in (("web", ["web", "--port", str(port), "--web-workers", "1"]), ("worker", ["worker"])):
        with (tmp_path / f"{name}.log").open("wb") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", "gateway", *argv], cwd=tmp_path, env=env,
                                              stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert processes[0].poll() is None, (tmp_path / "web.log").read_text(errors="replace")
        try:
            return requests.get(url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, "the gateway to answer", timeout=TIMEOUT_S)
        yield url
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_the_documented_app_passes_zapiers_app_tester(live_gateway: str, tmp_path: Path) -> None:
    app = tmp_path / "zapier-app"
    app.mkdir()
    for name in ("package.json", "live-test.js"):
        shutil.copy(APP / name, app / name)
    (app / "index.js").write_text(app_from_the_docs(), encoding="utf-8")
    modules = node_modules()
    assert modules is not None
    (app / "node_modules").symlink_to(modules, target_is_directory=True)

    run = subprocess.run(["node", "live-test.js"], cwd=app, capture_output=True, text=True, timeout=TIMEOUT_S,
                         env={**os.environ, "GATEWAY_URL": live_gateway, "API_KEY": KEY, "API_KEY_LABEL": LABEL})

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    assert steps["connection_test"] == {"sink": "zapier", "label": LABEL, "create_tickets": True,
                                        "events": ["feedback.received", "ticket.created", "ticket.resolved"]}
    assert steps["live_item"]["id"] == steps["live_item"]["event_id"]
    assert steps["live_item"]["ticket_id"] == steps["created_ticket"]["id"]
