"""HTTP load with wrk (a C load generator, so the client costs little of the 2 cores).

``post_load`` is closed-loop throughput (a fixed body, as fast as the server answers);
``paced_creates`` sends signed, time-stamped ticket creates at a chosen rate for latency
runs. Both parse the one JSON line the scripts in ``bench/lua`` print at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"


class WrkMissingError(RuntimeError):
    """wrk is not installed (``bench/setup.sh`` installs it)."""


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """wrk's summary of one run."""

    requests: int
    duration_s: float
    errors: int
    status_errors: int
    latency_p50_ms: float
    latency_p99_ms: float

    @property
    def rps(self) -> float:
        """Requests per second, only counting 2xx/3xx answers."""
        return (self.requests - self.status_errors) / self.duration_s if self.duration_s else 0.0

    @property
    def ok(self) -> int:
        return self.requests - self.status_errors


def parse_output(output: str) -> WrkResult:
    """The ``BENCH_JSON`` line of a wrk run using ``bench/lua/report.lua``."""
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            doc = json.loads(line[len("BENCH_JSON ") :])
            errors = doc["connect_errors"] + doc["read_errors"] + doc["write_errors"] + doc["timeouts"]
            return WrkResult(
                requests=doc["requests"],
                duration_s=doc["duration_us"] / 1e6,
                errors=errors,
                status_errors=doc["status_errors"],
                latency_p50_ms=doc["latency_p50_us"] / 1000,
                latency_p99_ms=doc["latency_p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk printed no summary:\n{output[-2000:]}")


def _run(
    script: str, url: str, env: dict[str, str], connections: int, duration: float, threads: int = 1
) -> WrkResult:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkMissingError("wrk is not installed: run bench/setup.sh (python -m bench does)")
    whole = max(1, math.ceil(duration))
    args = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{whole}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        # A turn of a second or more runs wrk's whole seconds, as it always has (so the full
        # run's turns are what they were); a shorter one (the quick run's) is stopped early.
        output, errors = _wait(proc, duration if duration < 1 else None, whole + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {errors[-2000:]}")
    return parse_output(output)


def _wait(proc: subprocess.Popen[str], stop_at: float | None, timeout: float) -> tuple[str, str]:
    """wrk's output once it has exited; with ``stop_at``, ended by SIGINT after that many
    seconds. wrk's ``-d`` takes whole seconds only, and its main thread sleeps for them; a
    SIGINT ends that sleep early, after which wrk stops its threads (within their 100 ms
    tick) and reports as usual, with the duration it really ran, so the rate stays right.
    wrk ignores SIGINT for the first milliseconds (until its threads are started), so the
    signal is sent again until it exits; a turn that missed them all runs to its ``-d``,
    which is still a correct measure, only longer."""
    deadline = time.monotonic() + timeout
    if stop_at is not None:
        try:
            return proc.communicate(timeout=stop_at)
        except subprocess.TimeoutExpired:
            pass
        while time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            try:
                return proc.communicate(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
    return proc.communicate(timeout=max(0.0, deadline - time.monotonic()))


def post_load(
    url: str, body_file: Path, signature: str | None, connections: int, duration: float
) -> WrkResult:
    """As many POSTs of ``body_file`` as the server takes, for ``duration`` seconds."""
    env = {"BENCH_BODY_FILE": str(body_file), "BENCH_SIGNATURE": signature or ""}
    return _run("post.lua", url, env, connections, duration)


def paced_creates(url: str, secret: str, rate: float, duration: float, connections: int = 8) -> WrkResult:
    """Signed ticket creates at ``rate`` per second (a schedule shared by ``connections``
    connections), each stamped with its send time (but each connection's first)."""
    env = {"BENCH_SECRET": secret, "BENCH_RATE": str(rate), "BENCH_CONNECTIONS": str(connections)}
    return _run("paced.lua", url, env, connections, duration)
