"""``gateway run``: the web server, N delivery workers and (when no Redis is configured)
the embedded Redis, started and supervised together from one command.

* Redis first (children need it), then the web server and the workers, each a
  ``python -m gateway web|worker`` child with ``GATEWAY_REDIS_URL`` and ``GATEWAY_CONFIG``
  set so that every process uses the same Redis and configuration.
* A worker that exits is restarted with exponential backoff (1 s doubling to 30 s, reset
  once it has stayed up a minute). The web server exiting is fatal: everything stops.
* The embedded Redis, should it die, is started again on the same data (append-only file).
* Ctrl-C / SIGTERM: web and workers get SIGTERM (graceful), then SIGKILL if they have
  not exited within the grace period; Redis stops last, so in-flight work can still write.
  A second Ctrl-C skips the grace period.

Children run in their own process group, so a terminal's Ctrl-C reaches only this
process and shutdown happens in that order; on Linux they also get SIGTERM if this
process dies without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType

from gateway.storage.connection import EmbeddedRedis, RedisUnavailable

GRACE_SECONDS = 20.0
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor's own shutdown still stops its children


@dataclasses.dataclass
class Child:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    restart: bool
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Starts children, restarts the restartable ones, stops them all in order."""

    def __init__(self, env: Mapping[str, str], echo: Callable[[str], None],
                 redis: EmbeddedRedis | None = None, grace: float = GRACE_SECONDS) -> None:
        self.env = dict(env)
        self.echo = echo
        self.redis = redis
        self.grace = grace
        self.children: list[Child] = []
        self.stop_requested = 0
        self.redis_retry_at = 0.0

    def add(self, name: str, argv: Sequence[str], restart: bool) -> Child:
        """Register and start a child."""
        child = Child(name, list(argv), restart)
        self.children.append(child)
        self._spawn(child)
        return child

    def _spawn(self, child: Child) -> None:
        # The supervisor runs no threads, so a preexec_fn is safe here.
        child.process = subprocess.Popen(
            child.argv, env=self.env, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested += 1
        if self.stop_requested == 1:
            self.echo(f"{signal.Signals(signum).name}: stopping (Ctrl-C again to force)")

    def run(self) -> int:
        """Supervise until a stop signal (exit 0) or the web server dies (exit 1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> int:
        while not self.stop_requested:
            now = time.monotonic()
            self._check_redis()
            for child in self.children:
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        self.echo(f"restarting {child.name}")
                        self._spawn(child)
                    continue
                code = child.process.poll() if child.process is not None else None
                if code is None:
                    continue
                if not child.restart:
                    self.echo(f"{child.name} exited with code {code}; stopping everything")
                    return 1
                if now - child.started_at >= STABLE_AFTER:
                    child.failures = 0
                delay = min(2.0 ** child.failures, MAX_BACKOFF)
                child.failures += 1
                child.restart_at = now + delay
                self.echo(f"{child.name} exited with code {code}; restarting in {delay:.0f}s")
            time.sleep(POLL_SECONDS)
        return 0

    def _check_redis(self) -> None:
        # The embedded Redis is restarted in place (same socket, same append-only file), so
        # web and workers reconnect to it with everything that was acknowledged.
        if self.redis is None or self.redis.process is None:
            return
        process = self.redis.process
        if process.poll() is None or time.monotonic() < self.redis_retry_at:
            return
        self.echo(f"embedded Redis exited with code {process.returncode}; restarting it")
        try:
            self.redis.start()
        except RedisUnavailable as exc:
            self.redis_retry_at = time.monotonic() + MAX_BACKOFF
            self.echo(f"could not restart the embedded Redis ({exc}); trying again in {MAX_BACKOFF:.0f}s")

    def stop(self) -> None:
        """SIGTERM every child, SIGKILL what is left after the grace period, then Redis."""
        live = [c for c in self.children if c.running()]
        for child in live:
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while any(c.running() for c in live) and time.monotonic() < deadline and self.stop_requested < 2:
            time.sleep(0.05)
        for child in self.children:
            if child.running():
                self.echo(f"{child.name} did not stop in time; killing it")
            # The whole process group, exited leaders' too: a gunicorn master that died
            # (the reason we are stopping) leaves its workers behind in its group.
            _signal(child, signal.SIGKILL, group=True)
            if child.process is not None:
                child.process.wait()
        if self.redis is not None:
            self.redis.stop()


def _signal(child: Child, signum: int, group: bool = False) -> None:
    if child.pid is None:
        return
    try:
        if group:
            os.killpg(child.pid, signum)
        else:
            os.kill(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
