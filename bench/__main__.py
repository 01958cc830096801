"""``python -m bench [--quick]`` (``make bench [QUICK=1]``): the whole suite in one go.

Each figure is measured in the same run as its baseline, one scenario at a time, on a
dedicated embedded Redis (AOF on). Prints a table and writes ``bench/results.json``.
See docs/performance.md for what each figure means and the last full run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.procs import MemoryWatch
from bench.stack import WARM_UP_S

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of everything: the full run, or the quick one (same keys, smaller counts)."""

    http_seconds: float = 20
    rounds: int = 10
    deliver_count: int = 10_000
    plain_count: int = 150
    slow_count: int = 2_000
    isolation_rate: float = 100
    isolation_seconds: float = 15
    e2e_seconds: float = 15
    cost_count: int = 2_000
    publish_count: int = 2_000
    change_rounds: int = 10
    ordered_tickets: int = 1_000
    ordered_rounds: int = 2
    raw_per_process: int = 20_000
    growth_seconds: float = 10
    growth_rounds: int = 4
    backlog_count: int = 100_000
    bytes_count: int = 5_000
    retention_s: float = 10
    retention_periods: int = 10
    retention_rate: float = 200
    warm_up_s: float = WARM_UP_S
    timeout: float = 300


FULL = Plan()
QUICK = Plan(
    # Every scenario once, small: `make bench QUICK=1` stays under 90 s on an idle 2-core
    # machine (issue #20). Its ratios are a smoke test; the full run is the measure.
    # Load turns of half a second (wrk's own -d takes whole seconds; bench/load.py stops
    # a shorter turn itself), and as long a warm-up.
    http_seconds=1,
    rounds=2,
    deliver_count=1_000,
    plain_count=16,
    slow_count=250,
    isolation_rate=100,
    isolation_seconds=1,
    e2e_seconds=1,
    cost_count=200,
    publish_count=300,
    change_rounds=2,
    ordered_tickets=300,
    ordered_rounds=1,
    raw_per_process=2_000,
    growth_seconds=0.5,
    growth_rounds=1,
    backlog_count=2_000,
    bytes_count=1_000,
    # Three periods of 2 s (3 s before): the same shape, one period in and two of expiry.
    retention_s=2,
    retention_periods=3,
    retention_rate=200,
    warm_up_s=0.5,
    timeout=60,
)
SCENARIOS = ("sink", "receive", "filtered", "costs", "deliver", "raw", "slow", "ordered", "isolation", "e2e",
             "integrations", "backlog", "bytes", "fanout", "retention")


def ensure_tools() -> None:
    """wrk (from Debian) through bench/setup.sh when it is missing."""
    if subprocess.run(["sh", "-c", "command -v wrk"], capture_output=True, check=False).returncode != 0:
        subprocess.run(["sh", str(HERE / "setup.sh")], check=True)


class CpuShare:
    """How much CPU processes other than this run's used meanwhile (other people's tests
    on a shared machine), in cores: system busy time minus our own and our children's."""

    def __init__(self) -> None:
        self.start_busy = self._busy()
        self.start_ours = self._ours()
        self.start = time.monotonic()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return (
            t.user
            + t.nice
            + t.system
            + getattr(t, "irq", 0)
            + getattr(t, "softirq", 0)
            + getattr(t, "steal", 0)
        )

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others_cores(self) -> float:
        wall = time.monotonic() - self.start
        foreign = (self._busy() - self.start_busy) - (self._ours() - self.start_ours)
        return round(max(0.0, foreign) / wall, 2) if wall > 0 else 0.0


def run(plan: Plan, only: set[str], run_dir: Path) -> dict[str, Any]:
    """Every scenario in ``only``; a failing scenario is recorded and the others still run."""
    from bench import costs, deliver, filtered, growth, integrations, latency, ordered, receive
    from bench.stack import Stack

    results: dict[str, Any] = {key: None for key in report.REQUIRED_KEYS}
    errors: dict[str, str] = {}
    cpu = CpuShare()
    load_before = report.load_average()
    started = time.monotonic()
    with Stack(run_dir, plan.warm_up_s) as stack, MemoryWatch() as memory:
        sinks = stack.start_sinks({"fast": {}, "slow": {"delay": 0.2}, "dead": {"hang": True}, "second": {}})
        fast, slow, dead, second = sinks["fast"], sinks["slow"], sinks["dead"], sinks["second"]

        def step(name: str, action: Callable[[], dict[str, Any]]) -> None:
            if name not in only:
                return
            report.progress(f"{name} ...")
            begun = time.monotonic()
            try:
                results.update(action())
            except Exception as exc:  # noqa: BLE001 - report it, carry on with the next scenario
                errors[name] = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            report.progress(f"{name} done in {time.monotonic() - begun:.1f}s")

        step("sink", lambda: receive.sink_capacity(stack, fast, plan.http_seconds / 4))
        step(
            "receive",
            lambda: receive.receive_vs_hello(stack, fast, plan.http_seconds, plan.rounds),
        )
        step("filtered", lambda: filtered.receive_filtered_vs_unfiltered(stack, fast, plan.http_seconds, plan.rounds))
        step(
            "costs",
            lambda: {
                "receive_cpu_budget_us": {
                    name.strip(): round(value, 1)
                    for name, value in costs.measure(plan.cost_count, stack).items()
                }
            },
        )
        step(
            "deliver",
            lambda: deliver.deliver_vs_plain(
                stack, fast, plan.deliver_count, plan.plain_count, memory, plan.timeout
            ),
        )
        # Right after deliver, so both see the same machine: deliver_vs_raw.
        step("raw", lambda: growth.raw_post(stack, fast, plan.raw_per_process, results.get("deliver_rps"),
                                            plan.timeout))
        step("slow", lambda: deliver.slow_sink(stack, slow, plan.slow_count, memory, plan.timeout))
        step(
            "ordered",
            lambda: ordered.ordered_vs_unordered(
                stack, fast, plan.ordered_tickets, memory, plan.timeout, plan.ordered_rounds
            ),
        )

        def capacity() -> float | None:
            # The most events/s the whole path takes in this run. Receive and delivery share
            # the same cores, so each event costs 1/receive_rps + 1/deliver_rps of them.
            rates = [v for v in (results.get("receive_rps"), results.get("deliver_rps")) if v]
            return 1 / sum(1 / r for r in rates) if rates else None

        def isolation() -> dict[str, Any]:
            # A moderate load (at most a quarter of capacity): the point is the dead sink, not
            # a saturated receive endpoint queueing requests.
            rate = min(plan.isolation_rate, (capacity() or 4 * plan.isolation_rate) / 4)
            return latency.isolation(stack, fast, dead, rate, plan.isolation_seconds, memory)

        step("isolation", isolation)

        def e2e() -> dict[str, Any]:
            most = capacity()
            if most is None:
                raise RuntimeError("needs receive_rps or deliver_rps from this run")
            return latency.end_to_end(stack, fast, most / 2, plan.e2e_seconds, memory)

        step("e2e", e2e)

        def integrations_step() -> dict[str, Any]:
            out = integrations.publish_cost(stack, plan.publish_count)
            # A PATCH switches a sink's URL between the fast sink and a second one.
            out.update(integrations.config_change(stack, fast, second, plan.change_rounds, memory))
            return out

        step("integrations", integrations_step)
        # Growth (#20): a big backlog, bytes per ticket, 20 sinks, retention (bench/growth.py).
        step("backlog", lambda: growth.backlog(stack, fast, plan.backlog_count, plan.growth_seconds, plan.growth_rounds,
                                               results.get("deliver_rps"), plan.timeout * 2))
        step("bytes", lambda: growth.redis_bytes(stack, fast, plan.bytes_count, plan.timeout))
        step("fanout", lambda: growth.fanout(stack, fast, plan.growth_seconds, plan.growth_rounds, plan.deliver_count,
                                             memory, plan.timeout))
        step("retention", lambda: growth.retention(stack, fast, plan.retention_s, plan.retention_periods,
                                                   plan.retention_rate, plan.timeout))
        if memory.peak_bytes:
            results["worker_rss_mb"] = round(memory.peak_mb, 1)
    results["context"] = {
        "quick": plan is QUICK,
        "seconds": round(time.monotonic() - started, 1),
        "load_average_before": load_before,
        "load_average_after": report.load_average(),
        "other_processes_cores": cpu.others_cores(),
        "machine": report.machine(),
        "plan": dataclasses.asdict(plan),
    }
    results["verdicts"] = report.verdicts(results)
    results["errors"] = errors
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: under a minute")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs, configs, Redis)")
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    ensure_tools()
    run_dir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    results = run(QUICK if args.quick else FULL, only, run_dir)
    report.write(results, args.output)
    print(report.table(results))
    print(report.details(results))
    context = results["context"]
    print(
        f"\n{'quick' if args.quick else 'full'} run, {context['seconds']}s; other processes used "
        f"{context['other_processes_cores']} of {context['machine']['cores']} cores; wrote {args.output}"
    )
    for name, error in results["errors"].items():
        print(f"error in {name}: {error}", file=sys.stderr)
    if args.keep:
        print(f"run directory: {run_dir}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
