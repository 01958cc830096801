"""Child processes of a bench run: start, wait until ready, watch memory, stop.

Every process the bench starts goes through :class:`Processes`, which stops them all (by
their own process group id, never by name) when the run ends, even on an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Self

import psutil
import requests

PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
# Children import ``bench`` (the sink, the hello app, the plain rq job) from the checkout.
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: object, what: str, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll ``check()`` until it is true; RuntimeError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> bool:
    """True when ``url`` answers at all (any status)."""
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


class Processes:
    """The child processes of one run; a context manager that stops them all on exit."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, **(env or {})}
        self.children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None, capture: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own process group, output to ``<log_dir>/<name>.log``
        (or a pipe with ``capture``)."""
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
        proc = subprocess.Popen(
            list(args),
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            stdout=subprocess.PIPE if capture else log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self.children.append(proc)
        return proc

    def stop(self, *procs: subprocess.Popen[bytes], timeout: float = 15.0,
             sig: signal.Signals = signal.SIGTERM) -> None:
        """``sig`` (SIGTERM) to each process's group (all at once, so their shutdowns
        overlap), then SIGKILL whatever lingers past ``timeout`` seconds."""
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # Children the leader left in its group (gunicorn workers) must not outlive it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.stdout is not None:
                proc.stdout.close()
            if proc in self.children:
                self.children.remove(proc)

    def stop_all(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.stop(*reversed(self.children), sig=sig)


def read_port(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """The port a child announced on its first stdout line (``PORT <n>``)."""
    assert proc.stdout is not None
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore
    reader.start()
    reader.join(timeout)
    if not result or not result[0].startswith(b"PORT "):
        raise RuntimeError(f"child {proc.args!r} did not announce its port: {result!r}")
    return int(result[0].split()[1])


class MemoryWatch:
    """Samples the peak resident memory of some processes (and their children) in the
    background; the kernel's own high-water mark (VmHWM) is read as well at each sample,
    so a spike between samples still counts."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.pids: set[int] = set()
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int) -> None:
        self.pids.add(pid)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    def _processes(self) -> Iterator[psutil.Process]:
        for pid in list(self.pids):
            try:
                proc = psutil.Process(pid)
                yield proc
                yield from proc.children(recursive=True)
            except psutil.Error:
                continue

    def sample(self) -> None:
        for proc in self._processes():
            try:
                rss = proc.memory_info().rss
                hwm = _vm_hwm(proc.pid)
            except psutil.Error:
                continue
            self.peak_bytes = max(self.peak_bytes, rss, hwm)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / (1024 * 1024)


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(*pids: int) -> float:
    """CPU time (user + system) used so far by these processes and all their descendants,
    including descendants already reaped (rq's work horses). On a shared machine CPU time
    per operation is a steadier measure than the rate, which depends on what else runs
    (steadier, not immune: contention for caches and cores slows every instruction)."""
    total = 0.0
    seen: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in tree:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total
