"""A third-party plugin written from the docs alone: the tutorial of docs/writing-plugins.md,
taken from its code blocks, on top of what ``gateway new-plugin`` writes, pip-installed, and
run end to end: it shows in ``gateway plugins``, passes ``gateway config check`` and its
own tests, and behind a live gateway and a real worker process its event type (with date
fields) publishes with 202 and is delivered, a 429 is retried after its Retry-After, and
bad event data gets a 422 with one message list per dotted path.

The package is installed with ``pip install --target`` into a directory of this test's own,
put on the gateway processes' PYTHONPATH: the same discovery (entry points in the
``gateway`` group), without tests running in parallel seeing an extra plugin and event
type in the shared virtualenv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from support.configs import write_config
from support.processes import free_port, wait_for_http

from gateway.testing import GatewayProcess, Reply, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"
BIN = Path(sys.executable).parent
TIMEOUT_S = 300
ADMIN = "third-party-admin-token-01234567"
BREACH = {"ticket_id": "t-9", "ticket_number": "TKT-2026-009",
          "sla": {"policy": "first-response-4h", "due_at": "2026-03-02T14:30:00Z"},
          "breached_at": "2026-03-02T14:30:09Z"}


def tutorial_files() -> dict[str, str]:
    """The tutorial's files: the code blocks after each ``<!-- tutorial-file: PATH -->``
    marker, concatenated per PATH in the order the page shows them."""
    files: dict[str, list[str]] = {}
    marker = re.compile(r"<!-- tutorial-file: (\S+) -->\n```python\n(.*?)```", re.DOTALL)
    for path, code in marker.findall(DOC.read_text(encoding="utf-8")):
        files.setdefault(path, []).append(code)
    return {path: "\n\n".join(blocks) for path, blocks in files.items()}


def environment(site: Path | None = None, **extra: str) -> dict[str, str]:
    """Ours minus anything pointing at another deployment or at this test session."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "PROMETHEUS_", "PYTEST_")) and k != "REDIS_URL"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def teams_plugin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tutorial's plugin, scaffolded, written from the docs and pip-installed into ./site
    (once for this module's tests)."""
    tmp_path = tmp_path_factory.mktemp("teams")
    package = tmp_path / "gateway-teams"
    created = run(str(BIN / "gateway"), "new-plugin", "teams", "--directory", str(package), cwd=tmp_path,
                  env=environment())
    assert created.returncode == 0, created.stderr
    files = tutorial_files()
    assert set(files) == {"gateway_teams/__init__.py", "tests/test_teams.py"}
    for relative, code in files.items():
        assert (package / relative).exists(), f"the scaffold did not write {relative}"
        (package / relative).write_text(code, encoding="utf-8")
    site = tmp_path / "site"
    installed = run(sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
                    "--target", str(site), str(package), cwd=tmp_path, env=environment())
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return package, site


@pytest.fixture
def served(teams_plugin: tuple[Path, Path], tmp_path: Path, redis_url: str, recording_sink: Any
           ) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A config with a teams sink, and ``gateway web`` + ``gateway worker`` processes on it."""
    _, site = teams_plugin
    config = write_config(tmp_path / "gateway.toml", {
        "gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": ADMIN},
        "delivery": {"allow_private_networks": True, "retry_jitter": 0},
        "sinks": [{"name": "support-channel", "type": "teams", "url": recording_sink.base_url + "/webhookb2/abc",
                   "events": ["sla.breached"]}]})
    env = environment(site, GATEWAY_CONFIG=str(config))
    port = free_port()
    logs = [tmp_path / "web.log", tmp_path / "worker.log"]
    processes: list[GatewayProcess] = []
    try:
        for argv, log in (((sys.executable, "-m", "gateway", "web", "--port", str(port), "--web-workers", "1"),
                           logs[0]),
                          ((sys.executable, "-m", "gateway", "worker"), logs[1])):
            processes.append(GatewayProcess.start(argv, log, env=env, cwd=tmp_path))
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/readyz", processes[0])
        yield url, config, env
    finally:
        for process in processes:
            process.stop()


def test_the_tutorials_plugin_installs_lists_checks_and_passes_its_own_tests(teams_plugin: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    package, site = teams_plugin

    listed = run(str(BIN / "gateway"), "plugins", "--json", cwd=tmp_path, env=environment(site))
    assert listed.returncode == 0, listed.stderr
    [teams] = [p for p in json.loads(listed.stdout) if p["name"] == "teams"]
    assert (teams["version"], teams["sink_types"], teams["event_types"], teams["error"]) == (
        "0.1.0", ["teams"], ["sla.breached"], None)

    events = json.loads(run(str(BIN / "gateway"), "events", "--json", cwd=tmp_path, env=environment(site)).stdout)
    [breach] = [e for e in events if e["name"] == "sla.breached"]
    assert breach["title"] == "SLA breached" and breach["sample"]["sla"]["due_at"] == "2026-01-15T14:30:00+00:00"

    # Its own tests, as the tutorial writes them (with their own embedded Redis).
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package, env=environment(site))
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "4 passed" in tests.stdout


def test_the_tutorials_plugin_delivers_through_a_live_gateway_and_a_worker(served: Any, recording_sink: Any,
                                                                          tmp_path: Path) -> None:
    url, config, env = served
    admin = {"Authorization": f"Bearer {ADMIN}"}

    checked = run(str(BIN / "gateway"), "config", "check", str(config), cwd=tmp_path, env=env)
    assert checked.returncode == 0 and checked.stdout.startswith("OK: 1 sink"), checked.stdout + checked.stderr

    recording_sink.reply(Reply(429, headers={"Retry-After": "1"}))  # then the default: 200 "ok"
    published = requests.post(f"{url}/api/events", json={"event": "sla.breached", "data": BREACH}, headers=admin,
                              timeout=30)
    assert published.status_code == 202, published.text

    first, second = recording_sink.wait_for(2, timeout=TIMEOUT_S)
    assert first.body == second.body and first.path == "/webhookb2/abc"
    card = second.json()
    assert (card["@type"], card["title"]) == ("MessageCard", "SLA breached")
    assert {"name": "sla.due_at", "value": "2026-03-02T14:30:00+00:00"} in card["sections"][0]["facts"]

    def delivered() -> Any:
        found = requests.get(f"{url}/api/deliveries?sink=support-channel", headers=admin, timeout=30).json()
        return found["deliveries"] if found["deliveries"] and found["deliveries"][0]["status"] == "delivered" else None

    [delivery] = wait_until(delivered, "the delivery to be marked delivered", timeout=TIMEOUT_S)
    assert delivery["target"]["url"] == f"{recording_sink.base_url}/…"  # the URL is a secret option
    log = requests.get(f"{url}/api/deliveries/{delivery['id']}", headers=admin, timeout=30).json()["delivery"]
    retried, sent = log["attempt_log"]
    assert (retried["status_code"], retried["outcome"], sent["outcome"]) == (429, "retry", "delivered")
    asked = datetime.fromisoformat(retried["next_attempt_at"]) - datetime.fromisoformat(retried["at"])
    assert asked >= timedelta(seconds=1)
    assert datetime.fromisoformat(sent["at"]) >= datetime.fromisoformat(retried["next_attempt_at"])

    bad = {**BREACH, "sla": {"policy": "first-response-4h", "due_at": "by lunch"}}
    refused = requests.post(f"{url}/api/events", json={"event": "sla.breached", "data": bad}, headers=admin,
                            timeout=30)
    assert refused.status_code == 422
    assert refused.json()["fields"] == {"data.sla.due_at": ["Not a valid datetime."]}
