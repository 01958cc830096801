"""The ``gateway`` command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from served_gateway import (
    DEADLINE_S,
    GUIDE_CURL_BODY,
    child_env,
    free_port,
    start_gateway,
    stop_process,
    write_config,
)

from gateway.store import connect


def gateway(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env or child_env(), timeout=120, check=False)


def sink_table(name: str, url: str = "https://crm.example.com/hooks", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "generic_webhook", "url": url, "events": ["ticket.created"], **extra}


def invoke(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Any:
    """The CLI in-process (click's runner): quicker than a subprocess for most checks."""
    from click.testing import CliRunner

    from gateway.cli import cli

    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./gateway.toml unless a test writes one


# -- config check -------------------------------------------------------------------------------

def test_config_check_ok(tmp_path: Path) -> None:
    path = write_config(tmp_path / "checked.toml", {"sinks": [sink_table("crm")]})
    result = gateway("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("OK: 1 sink ")
    # The same file through --config, GATEWAY_CONFIG, and ./gateway.toml.
    assert invoke("config", "check", "--config", str(path)).stdout.startswith("OK: 1 sink ")
    assert invoke("config", "check", env={"GATEWAY_CONFIG": str(path)}).stdout.startswith("OK: 1 sink ")
    assert invoke("config", "check").stdout.startswith("OK: 0 sinks (built-in defaults)")
    write_config(tmp_path / "gateway.toml", {"sinks": [sink_table("a"), sink_table("b")]})
    assert invoke("config", "check").stdout.startswith("OK: 2 sinks ")


def test_config_check_lists_each_bad_field_by_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gateway.toml", {
        "gateway": {"secret": "${NOT_SET_ANYWHERE_1}", "colour": "red"},
        "sinks": [sink_table("crm"), sink_table("b", url="not a url"), sink_table("crm"),
                  sink_table("d", type="carrier_pigeon"), sink_table("e", events=["ticket.deleted"])],
    })
    result = gateway("config", "check", str(path))
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert lines[0] == f"Configuration errors in {path.resolve()}:"
    pigeon = [line for line in lines if line.startswith("sinks[3].type: Unknown sink type 'carrier_pigeon'")]
    assert len(pigeon) == 1
    assert set(lines[1:]) - set(pigeon) == {
        "gateway.colour: Unknown field.",
        "gateway.secret: Environment variable NOT_SET_ANYWHERE_1 is not set.",
        "sinks[1].url: Not a valid URL.",
        "sinks[2].name: Duplicate sink name 'crm'.",
        "sinks[4].events: Unknown event 'ticket.deleted'.",
    }


def test_config_check_missing_or_broken_file(tmp_path: Path) -> None:
    missing = invoke("config", "check", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "Cannot read" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\n")
    result = invoke("config", "check", str(broken))
    assert result.exit_code == 2 and "(file): Not valid TOML" in result.stderr


def test_config_errors_stop_other_commands_too(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gateway.toml", {"sinks": [sink_table("b", url="nope")]})
    result = invoke("run", "--config", str(path), "--port", str(free_port()))
    assert result.exit_code == 2
    assert "sinks[0].url: Not a valid URL." in result.stderr
    assert not (tmp_path / ".gateway").exists()  # nothing was started


# -- sign ---------------------------------------------------------------------------------------

def test_sign_prints_the_hex_hmac_of_the_exact_bytes(tmp_path: Path) -> None:
    body = GUIDE_CURL_BODY
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    (tmp_path / "body.json").write_bytes(body)
    assert invoke("sign", "--secret", "s3cret", str(tmp_path / "body.json")).stdout == expected + "\n"
    # Real stdin of a real process, as in `gateway sign --secret S < body.json`.
    from_stdin = gateway("sign", "--secret", "s3cret", "-", stdin=body)
    assert from_stdin.stdout.decode() == expected + "\n"
    # No newline is added or stripped: a trailing newline is part of what is signed.
    with_newline = invoke("sign", "--secret", "s3cret", stdin=body + b"\n")
    assert with_newline.stdout.strip() == hmac.new(b"s3cret", body + b"\n", hashlib.sha256).hexdigest()


def test_sign_takes_the_secret_from_the_environment_or_the_config(tmp_path: Path) -> None:
    body = b'{"event":"ticket.create"}'
    expected = hmac.new("sécret".encode(), body, hashlib.sha256).hexdigest()
    assert invoke("sign", stdin=body, env={"WEBHOOK_SECRET": "sécret"}).stdout.strip() == expected
    path = write_config(tmp_path / "other.toml", {"gateway": {"secret": "sécret"}})
    assert invoke("sign", "--config", str(path), stdin=body).stdout.strip() == expected
    nothing = invoke("sign", stdin=body)
    assert nothing.exit_code == 2 and "--secret" in nothing.stderr


# -- plugins / events ---------------------------------------------------------------------------

def test_plugins_json_and_table() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["gateway.builtin_events"]["builtin"] is True
    assert plugins["gateway.builtin_events"]["version"]
    assert "ticket.created" in plugins["gateway.builtin_events"]["event_types"]
    assert plugins["generic_webhook"]["sink_types"] == ["generic_webhook"]
    assert plugins["generic_webhook"]["error"] is None and plugins["generic_webhook"]["version"]
    table = invoke("plugins").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "VERSION"]
    assert any(line.split()[0] == "generic_webhook" and "ok" in line.split() for line in table)


def test_events_catalogue() -> None:
    events = json.loads(invoke("events", "--json").stdout)
    assert [e["name"] for e in events] == sorted([
        "ticket.created", "ticket.updated", "ticket.resolved", "ticket.escalated", "ai.response.generated",
        "ai.response.requires_review", "ai.response.approved", "ai.response.rejected", "conversation.added",
        "feedback.received"])
    assert all(e["description"] and e["sample"] for e in events)
    table = invoke("events").stdout
    assert "ai.response.rejected" in table and "AI response rejected" in table


def test_every_command_has_help_and_config() -> None:
    top = gateway("--help")  # the console entry point, in a fresh process
    assert top.returncode == 0
    for command in ("run", "web", "plugins", "events", "sign", "worker"):
        assert command in top.stdout.decode()
        assert "--config" in invoke(command, "--help").stdout, command
    assert "--config" in invoke("config", "check", "--help").stdout


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


def process_tree() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process (via /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``."""
    children = process_tree()
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def run_gateway(cwd: Path) -> Any:
    """``gateway run`` with one web and one delivery worker, in ``cwd`` (no --config:
    ./gateway.toml if there is one, as after ``make run``)."""
    return start_gateway(cwd, "run", "--web-workers", "1", "--workers", "1")


def direct_children(pid: int, argument: bytes) -> list[int]:
    """Live children of ``pid`` started with ``argument`` (e.g. b"worker") on their command line."""
    return [child for child in process_tree().get(pid, [])
            if alive(child) and b"\x00" + argument + b"\x00" in Path(f"/proc/{child}/cmdline").read_bytes() + b"\x00"]


def test_gateway_run_serves_delivers_and_stops_everything(tmp_path: Path, receiver: Any) -> None:
    sink_url, received = receiver
    secret = "guide-secret"
    write_config(tmp_path / "gateway.toml", {
        "gateway": {"secret": secret},
        "delivery": {"allow_private_networks": True},
        "sinks": [sink_table("local", url=sink_url, secret="sink-secret")],
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
        code = stop_process(run.process, signal.SIGINT)
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
        assert stop_process(run.process, signal.SIGTERM) == 0, run.output()


def test_gateway_run_stops_everything_when_the_web_server_dies(tmp_path: Path) -> None:
    run = run_gateway(tmp_path)
    try:
        started = descendants(run.process.pid)
        [web] = direct_children(run.process.pid, b"web")
        os.kill(web, signal.SIGKILL)
        assert run.process.wait(DEADLINE_S) == 1
    finally:
        stop_process(run.process)
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
        code = stop_process(web.process, signal.SIGTERM)
    assert code == 0, web.output()
    assert [pid for pid in started if alive(pid)] == [], web.output()
    # The embedded Redis kept the ticket (append-only file): a new server on the same data sees it.
    from gateway.store import EmbeddedRedis

    again = EmbeddedRedis(tmp_path / ".gateway").start()
    try:
        assert connect(again.url).zcard("gw:tickets") == 1
    finally:
        again.stop()


def test_a_command_that_starts_the_embedded_redis_stops_it(tmp_path: Path) -> None:
    # `gateway deliveries` outside `gateway run`: it may start the embedded Redis to read the
    # data under .gateway/, but no redis-server may outlive the command.
    result = gateway("deliveries", "--json", cwd=tmp_path)
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
        # Redis writes the append-only file before it replies, so a killed server has lost
        # nothing it acknowledged (appendfsync only matters when the machine itself dies).
        assert "embedded Redis exited with code -9; restarting it" in run.output()
        token = (tmp_path / ".gateway" / "admin_token").read_text().strip()
        ids = [t["id"] for t in requests.get(run.url + "/api/tickets", timeout=10,
                                             headers={"Authorization": f"Bearer {token}"}).json()["tickets"]]
        assert first.json()["ticket"]["id"] in ids
    finally:
        assert stop_process(run.process, signal.SIGINT) == 0, run.output()
