"""Real parts for tests of the HTTP path: the gateway served by gunicorn in a subprocess
(``python -m gateway web``), a TOML writer for its config, and a free-port finder."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import tomli_w
from marshmallow import Schema

from gateway import hookimpl
from gateway.config import url_field
from gateway.sinks import DeliveryInfo, OutgoingRequest, Sink, SinkType, Target

DEADLINE_S = 90.0  # generous: CI runs three test workers on two cores; a pass returns at once
# The guide's "Test Incoming Webhook" curl body, byte for byte.
GUIDE_CURL_BODY = b"""{
    "event": "ticket.create",
    "data": {
      "subject": "Test Ticket",
      "message": "This is a test",
      "customer_email": "test@example.com"
    }
  }"""


class UrlOptions(Schema):
    url = url_field(required=True)


class EnvelopeSink(Sink):
    """A minimal sink: POST the guide's envelope to ``url``."""

    def render(self, event: Any, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                               headers={"Content-Type": "application/json"})


class EventRecorder:
    """A plugin recording the name of every event published (what sinks are told about)."""

    __name__ = "event_recorder"

    def __init__(self) -> None:
        self.names: list[str] = []

    @hookimpl
    def event_published(self, event: Any, sinks: Any) -> None:
        self.names.append(event.name)


class EnvelopeSinkPlugin:
    """Registers the ``envelope`` sink type, for tests that need a configured sink."""

    __name__ = "envelope_sink_plugin"

    @hookimpl
    def register_sink_types(self, register: Any) -> None:
        register(SinkType(name="envelope", options_schema=UrlOptions, factory=EnvelopeSink))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` (as the TOML would parse: ``gateway``/``delivery`` tables, ``sinks``
    array) to ``path`` as TOML."""
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a gateway subprocess: ours minus anything that would point it at
    another deployment's Redis or config."""
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_REDIS_URL", "GATEWAY_CONFIG")}
    env.update(extra)
    return env


@dataclasses.dataclass
class Started:
    """A ``python -m gateway <command>`` subprocess serving on ``url``."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclasses.dataclass
class ServedGateway(Started):
    admin_token: str = ""


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = DEADLINE_S) -> None:
    """Wait until ``url`` answers 200; fail (with the server's output) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its workers still booting on a busy machine
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout}s:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = DEADLINE_S) -> int:
    """Signal ``process`` and wait for it; SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def start_gateway(cwd: Path, command: str, *args: str, ready_path: str = "/readyz") -> Started:
    """Start ``python -m gateway <command> --port <free port> <args>`` in ``cwd`` and wait until
    ``ready_path`` answers 200 (stopping it again if it never does). The caller stops it."""
    for attempt in range(3):
        port = free_port()
        log = cwd / f"{command}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "gateway", command, "--port", str(port), *args],
                                       stdout=out, stderr=subprocess.STDOUT, env=child_env(), cwd=cwd)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(url + ready_path, process, log)
        except AssertionError:
            stop_process(process)
            # The free port can be taken by someone else before the server binds it.
            if "in use" in log.read_text(errors="replace") and attempt < 2:
                continue
            raise
        except BaseException:
            stop_process(process)
            raise
        return Started(url, process, log)
    raise AssertionError("unreachable")


@contextmanager
def served_gateway(tmp_path: Path, redis_url: str, config: Mapping[str, Any] | None = None,
                   web_workers: int = 2) -> Iterator[ServedGateway]:
    """``python -m gateway web`` on a free port with ``config`` (on the test Redis)."""
    config = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in (config or {}).items()}
    gateway = config.setdefault("gateway", {})
    gateway.setdefault("redis_url", redis_url)
    gateway.setdefault("data_dir", str(tmp_path / "data"))
    gateway.setdefault("admin_token", "test-admin-token-0123456789")
    path = write_config(tmp_path / "gateway.toml", config)
    started = start_gateway(tmp_path, "web", "--config", str(path), "--web-workers", str(web_workers),
                            ready_path="/healthz")
    try:
        yield ServedGateway(started.url, started.process, started.log, gateway["admin_token"])
    finally:
        stop_process(started.process)
