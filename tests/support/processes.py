"""Processes a test starts and watches: gateway servers and workers as real subprocesses,
the CLI run to completion, free ports, the process tree (read from /proc), and the suite's
deadline for waiting on any of them.

Every process is a :class:`gateway.testing.GatewayProcess` (its output in a log file):
:class:`ServedProcess` adds the URL it serves on; :class:`KillableProcess` leads its own
process group, so that a SIGKILL takes its children too (the reliability tests' kills).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from gateway import testing
from gateway.testing import GatewayProcess, child_env

DEADLINE_S = 90.0  # generous: CI runs three test workers on two cores; a pass returns at once
TESTS_DIR = Path(__file__).resolve().parents[1]


def wait_until(predicate: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE_S) -> Any:
    """:func:`gateway.testing.wait_until` with this suite's CI deadline."""
    return testing.wait_until(predicate, what, timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gateway_command(*args: str, stdin: bytes | None = None, cwd: Path | None = None,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m gateway <args>`` run to completion as a user runs it, output captured."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env or child_env(), timeout=120, check=False)


def wait_for_http(url: str, proc: GatewayProcess, timeout: float = DEADLINE_S) -> None:
    """Wait until ``url`` answers 200; fail (with the server's output) if the process exits
    or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise AssertionError(f"server exited with {proc.process.returncode}:\n{proc.output()}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its workers still booting on a busy machine
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout}s:\n{proc.output()}")
        time.sleep(0.1)


# -- gateway processes ---------------------------------------------------------------------------


@dataclasses.dataclass
class ServedProcess(GatewayProcess):
    """A ``python -m gateway <command>`` subprocess serving on ``url``."""

    url: str = ""


def start_gateway(cwd: Path, command: str, *args: str, ready_path: str = "/readyz") -> ServedProcess:
    """Start ``python -m gateway <command> --port <free port> <args>`` in ``cwd`` and wait until
    ``ready_path`` answers 200 (stopping it again if it never does). The caller stops it."""
    for attempt in range(3):
        port = free_port()
        log = cwd / f"{command}.log"
        log.unlink(missing_ok=True)  # a retry's log must not show the failed attempt's "in use"
        started = GatewayProcess.start([sys.executable, "-m", "gateway", command, "--port", str(port), *args],
                                       log, cwd=cwd)
        served = ServedProcess(started.process, started.log_path, f"http://127.0.0.1:{port}")
        try:
            wait_for_http(served.url + ready_path, served)
        except AssertionError:
            served.stop(timeout=DEADLINE_S)
            # The free port can be taken by someone else before the server binds it.
            if "in use" in served.output() and attempt < 2:
                continue
            raise
        except BaseException:
            served.stop(timeout=DEADLINE_S)
            raise
        return served
    raise AssertionError("unreachable")


def start_worker(config_path: Path, log_path: Path, *args: str, plain: bool = True) -> GatewayProcess:
    """A real worker process on ``config_path``: ``python -m gateway worker``, or with ``plain``
    the same worker with the ``plain`` sink type registered (:mod:`support.plain_worker`)."""
    if plain:
        # The child imports support as this process does: tests/ on its path.
        path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
        return GatewayProcess.start([sys.executable, "-m", "support.plain_worker", "--config", str(config_path),
                                     *args], log_path, env=child_env(PYTHONPATH=path))
    return GatewayProcess.start([sys.executable, "-m", "gateway", "worker", "--config", str(config_path), *args],
                                log_path)


@dataclasses.dataclass
class KillableProcess(GatewayProcess):
    """A gateway process leading its own process group (``name`` says which, for messages)."""

    name: str = ""

    def kill(self) -> None:
        """SIGKILL the whole group: the process and anything it forked (rq's scheduler)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """``sig`` to the whole group, then SIGKILL to whatever of it is left after ``timeout`` s."""
        if self.alive():
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.process.wait()


def _start_killable(name: str, config: Path, log: Path, *args: str) -> KillableProcess:
    started = GatewayProcess.start([sys.executable, "-m", "gateway", "--config", str(config), *args], log,
                                   new_session=True)
    return KillableProcess(started.process, started.log_path, name)


def start_killable_worker(config: Path, log: Path, concurrency: int = 8) -> KillableProcess:
    """``gateway worker`` as a real process, in its own process group."""
    return _start_killable("worker", config, log, "worker", "--concurrency", str(concurrency))


def start_killable_web(config: Path, log: Path, port: int, web_workers: int = 2) -> KillableProcess:
    """``gateway web`` (gunicorn) as a real process in its own process group; returns once it
    answers /healthz."""
    proc = _start_killable("web", config, log, "web", "--host", "127.0.0.1", "--port", str(port),
                           "--web-workers", str(web_workers))
    wait_for_http(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


# -- the process tree ----------------------------------------------------------------------------


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
    """True while ``pid`` runs (a zombie has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (gunicorn's forked workers)."""
    return sorted(child for child in process_tree().get(pid, []) if alive(child))


def direct_children(pid: int, argument: bytes) -> list[int]:
    """Live children of ``pid`` started with ``argument`` (e.g. b"worker") on their command line."""
    return [child for child in process_tree().get(pid, [])
            if alive(child) and b"\x00" + argument + b"\x00" in Path(f"/proc/{child}/cmdline").read_bytes() + b"\x00"]
