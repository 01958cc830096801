"""``python -m bench.engine_profile``: a delivery worker's CPU per delivery, by part.

One ``gateway worker`` engine (rq SimpleWorker + drainer + delivery threads, exactly what
``gateway worker`` builds) runs *in this process* in burst mode and drains a pre-loaded
backlog into a bench sink (its own process, as Redis is). So this process's CPU time over
the drain is the worker's CPU, and a thread-aware profiler sees every delivery thread.

Prints, per delivery:

* process CPU (user + system, every thread) and thread switches (voluntary / involuntary);
* with ``--yappi``: Python function calls (a count that does not depend on the machine's
  load) and yappi's CPU clock per part of the engine (claim, render, sign, send, finish,
  log line, metrics, hooks, ...), inclusive of what each part calls. Profiling slows every
  call, so the parts compare with each other, not with the unprofiled CPU.

The parts are defined in :data:`PARTS` (a function's qualified name -> the part it stands
for); ``--top`` lists the functions with the most own time besides.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.deliver import preload, sink_table
from bench.stack import Stack

PARTS: dict[str, str] = {
    # qualified name as yappi reports it (module path suffix, function) -> part
    "Scripts.claim": "claim round trip (claim.lua + reply parsing)",
    "Event.from_json": "event JSON parse",
    "Target.from_json": "target JSON parse",
    "GenericWebhookSink.render": "render (envelope JSON)",
    "signature_headers": "HMAC signing headers",
    "hide_headers": "redaction: headers shown in the log",
    "sent_secrets": "redaction: secrets sent",
    "excerpt": "redaction: body excerpts",
    "shown_url": "redaction: URL shown",
    "OutboundClient.send": "urllib3 send + response parse",
    "GenericWebhookSink.classify": "classify",
    "AttemptRunner._judge": "judge outcome",
    "AttemptRunner._finish": "finish (record JSON + finish.lua round trip + reporter)",
    "GroupFinish.__call__": "finish.lua group commit (incl. waiting for the leader)",
    "Scripts.finish": "finish.lua round trip (leader's write)",
    "log_attempt": "attempt log line",
    "Metrics.observe_attempt": "metrics",
    "_HookCaller.__call__": "pluggy hooks (delivery_attempted)",
    "AttemptRunner.run": "AttemptRunner.run (one whole attempt)",
    "Drainer._run": "Drainer._run (attempt + bookkeeping)",
    "Drainer._submit": "thread hand-off: submit to the pool",
    "Drainer._done": "thread hand-off: slot freed",
    "Drainer._loop": "drainer loop (claims, waits)",
    "_worker": "pool thread: wait for work + run it",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="deliveries to pre-load and drain")
    parser.add_argument("--yappi", action="store_true", help="profile every thread with yappi (CPU clock)")
    parser.add_argument("--calls", action="store_true",
                        help="count Python and builtin calls per delivery by part (innermost part wins)")
    parser.add_argument("--strace", metavar="FILE", help="strace -c -f this process over the drain into FILE")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with most own time")
    parser.add_argument("--by-calls", action="store_true", help="--top by number of calls, not own time")
    parser.add_argument("--max-in-flight", type=int, default=10, help="the sink's in-flight cap (default 10)")
    args = parser.parse_args(argv)

    from gateway import logs
    from gateway.delivery.worker import build_worker
    from gateway.metrics import ensure_multiprocess_dir
    from gateway.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="engine-profile-") as tmp, Stack(Path(tmp)) as stack:
        sink = stack.start_sink("fast")
        config = stack.write_config("profile", [sink_table("fast", sink, max_in_flight=args.max_in_flight)])
        preload(config, args.count)
        # As `gateway worker` sets itself up: INFO log lines (one per attempt, to stderr:
        # redirect it) and the multiprocess metrics directory.
        logs.configure("text", "INFO")
        runtime = Runtime.from_config(config, start_embedded=False)
        ensure_multiprocess_dir(runtime.settings.data_dir)
        worker = build_worker(runtime)
        yappi: Any = None
        if args.yappi:
            import yappi  # type: ignore[import-not-found,no-redef]

            yappi.set_clock_type("cpu")
            yappi.start(builtins=True, profile_threads=True)
        counter = _CallCounter() if args.calls else None
        if counter is not None:
            counter.start()
        tracer = _strace(args.strace) if args.strace else None
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.monotonic()
        worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=60)
        if yappi is not None:
            yappi.stop()
        if counter is not None:
            counter.stop()
        delivered = sink.counts()["deliveries"]
        if delivered < args.count:
            print(f"only {delivered} of {args.count} delivered")
        n = max(delivered, 1)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{delivered} deliveries in {wall:.2f} s (incl. the burst's idle linger)")
        print(f"worker CPU per delivery: {1e6 * cpu / n:,.0f} us "
              f"(user {1e6 * (after.ru_utime - before.ru_utime) / n:,.0f}, "
              f"system {1e6 * (after.ru_stime - before.ru_stime) / n:,.0f})")
        print(f"thread switches per delivery: voluntary {(after.ru_nvcsw - before.ru_nvcsw) / n:.1f}, "
              f"involuntary {(after.ru_nivcsw - before.ru_nivcsw) / n:.1f}")
        if yappi is not None:
            _report(yappi, n, args.top, args.by_calls)
        if counter is not None:
            counter.report(n)
        runtime.redis.close()
    return 0


def _strace(output: str) -> subprocess.Popen[bytes]:
    """``strace -c -f`` attached to this process (every thread) until SIGINT."""
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", output, "-p", str(os.getpid())],
                              stderr=subprocess.DEVNULL)
    time.sleep(2.0)  # attached to every thread before the drain starts
    return tracer


class _CallCounter:
    """Counts every Python and builtin call (``sys.setprofile`` in every thread), each
    under the innermost :data:`PARTS` function it happens in: a measure of work per
    delivery that, unlike seconds, does not move with the machine's load."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.local = threading.local()
        self.lock = threading.Lock()

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
            self.local.counts = collections.Counter()
            with self.lock:
                self._threads.append(self.local.counts)
        if event == "call":
            part = PARTS.get(frame.f_code.co_qualname)
            if part is not None:
                stack.append((frame, part))
        elif event == "return":
            if stack and stack[-1][0] is frame:
                stack.pop()
            return
        elif event != "c_call":
            return
        self.local.counts[stack[-1][1] if stack else "outside the parts (rq, threading)"] += 1

    def start(self) -> None:
        self._threads: list[collections.Counter[str]] = []
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)

    def stop(self) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        for counts in self._threads:
            self.counts.update(counts)

    def report(self, n: int) -> None:
        total = sum(self.counts.values())
        print("")
        print(f"calls per delivery: {total / n:,.0f} (Python functions + builtins)")
        print("| part (calls inside nested parts are theirs) | calls / delivery | share |")
        print("|---|---|---|")
        for part, count in self.counts.most_common():
            print(f"| {part} | {count / n:,.1f} | {100 * count / total:.0f}% |")


def _report(yappi: Any, n: int, top: int, by_calls: bool) -> None:
    stats = yappi.get_func_stats()
    calls = sum(s.ncall for s in stats)
    total = sum(s.tsub for s in stats)
    print(f"Python calls per delivery (yappi, builtins included): {calls / n:,.0f}")
    print(f"profiled CPU per delivery (sum of own times, inflated by the profiler): {1e6 * total / n:,.0f} us")
    by_part: dict[str, list[float]] = {}
    for s in stats:
        name = s.name
        for key, part in PARTS.items():
            if name == key or name.endswith("." + key):
                entry = by_part.setdefault(part, [0.0, 0.0, 0])
                entry[0] += s.ttot
                entry[1] += s.ncall
    print("")
    print("| part | calls / delivery | us / delivery (inclusive, profiled) | share of profiled |")
    print("|---|---|---|---|")
    for part, (ttot, ncall, _) in sorted(by_part.items(), key=lambda kv: -kv[1][0]):
        print(f"| {part} | {ncall / n:.2f} | {1e6 * ttot / n:,.1f} | {100 * ttot / total:.0f}% |")
    if top:
        print("")
        print(f"| function (by {'calls' if by_calls else 'own time'}) | calls / delivery | us / delivery |")
        print("|---|---|---|")
        for s in sorted(stats, key=lambda s: -s.ncall if by_calls else -s.tsub)[:top]:
            print(f"| {s.module.rsplit('/', 2)[-1]}:{s.name} | {s.ncall / n:.2f} | {1e6 * s.tsub / n:,.1f} |")


if __name__ == "__main__":
    raise SystemExit(main())
