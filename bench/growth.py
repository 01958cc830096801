"""How the gateway behaves as its data grows, and how far delivery is from the limit (#20).

* ``raw_post_rps``: 2 processes (``bench/raw_post.py``) posting the generic webhook's
  signed envelope in a urllib3 keep-alive loop to the fast sink, each post with its own
  delivery id; measured at the sink like ``deliver_rps`` and run right after it, so
  ``deliver_vs_raw`` = ``deliver_rps`` / ``raw_post_rps`` compares the same machine state.
* Backlog (:func:`backlog`): N events published for the fast sink with no worker running
  (a plain waiting backlog, the state a sink that was down and is back leaves), receive
  vs hello in alternating turns with Redis empty and then with the backlog in it, then 2
  workers drain it: ``backlog_drain_rps``, ``backlog_drain_ratio`` (over ``deliver_rps``),
  ``backlog_worker_rss_mb``, ``receive_ratio_backlog``.
* Bytes (:func:`redis_bytes`): ``used_memory`` growth per ticket created the way the
  receive endpoint creates it (a ~400-byte message, one subscribed sink), while its delivery
  waits (``redis_bytes_per_pending``) and once delivered (``redis_bytes_per_ticket``), with
  ``MEMORY USAGE`` per key kind (``redis_bytes_breakdown``) to say where the bytes are.
* Fan-out (:func:`fanout`): receive with 20 subscribed sinks over receive with 1, in the
  same turns (``receive_ratio_fanout20``), and deliveries/s to 20 sinks
  (``deliver_rps_fanout20``).
* Retention (:func:`retention`): events published at a steady rate for several retention
  periods (a retention of seconds: ``bench/retention_worker.py``) with 2 workers delivering;
  ``retention_memory_ratio`` = ``used_memory`` growth at the end over the growth once one
  retention period's volume was in.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis

from bench import load
from bench.deliver import WEB, drain_rate, one_sink_config, preload, sample_ticket, sink_table
from bench.procs import PYTHON, MemoryWatch
from bench.receive import CONNECTIONS, ticket_body
from bench.report import progress
from bench.stack import SinkHandle, Stack, runtime_for, watch_drain

RAW_PROCESSES = 2
FANOUT_SINKS = 20
MESSAGE_400 = (
    "The export button on the monthly report page does nothing since this morning. We tried "
    "two browsers and cleared the cache; the network tab shows the request to /reports/export "
    "answered 502 after thirty seconds. Our finance team needs the March figures for the board "
    "meeting tomorrow at nine, so a workaround would help too. Account: ACME-4471, plan Business. "
    "Reply to this address."
)
assert 380 <= len(MESSAGE_400) <= 420


# -- raw post ------------------------------------------------------------------------
def raw_post(stack: Stack, sink: SinkHandle, per_process: int, deliver_rps: float | None,
             timeout: float) -> dict[str, Any]:
    """``raw_post_rps`` and, when ``deliver_rps`` was measured in this run, ``deliver_vs_raw``."""
    sink.reset()
    procs = [
        stack.procs.start(f"raw-post-{i}", [PYTHON, "-m", "bench.raw_post", "--url", sink.url,
                                            "--count", str(per_process), "--tag", f"raw{i}"])
        for i in range(RAW_PROCESSES)
    ]
    try:
        drain = watch_drain(stack, sink, RAW_PROCESSES * per_process, procs, timeout)
    finally:
        stack.stop(*procs)
    out: dict[str, Any] = {
        "raw_post_rps": drain.rps,
        "raw_post_count": RAW_PROCESSES * per_process,
        "raw_post_cpu_us_per_delivery": drain.cpu_us,
    }
    if deliver_rps:
        out["deliver_vs_raw"] = ratio(deliver_rps, drain.rps)
    return out


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded, or None when either is missing or the
    denominator is 0 (a figure not measured is not a ratio of 0)."""
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


# -- alternating receive turns ---------------------------------------------------------
def alternate(urls: Mapping[str, str], body: Path, signature: str, seconds: float,
              rounds: int) -> dict[str, float]:
    """Requests/s of each server, loaded in turns (a, b, b, a, ...) for ``seconds`` in all
    per server; a non-2xx or socket error fails the scenario."""
    names = list(urls)
    turns: dict[str, list[load.WrkResult]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            turns[name].append(load.post_load(urls[name], body, signature, CONNECTIONS, seconds / rounds))
    for name, runs in turns.items():
        bad = [r for r in runs if r.status_errors or r.errors]
        if bad:
            raise RuntimeError(f"{name} answered {bad[0].status_errors} non-2xx and {bad[0].errors} socket errors")
    return {name: sum(r.ok for r in runs) / sum(r.duration_s for r in runs) for name, runs in turns.items()}


# -- backlog -----------------------------------------------------------------------------
def backlog(stack: Stack, sink: SinkHandle, count: int, seconds: float, rounds: int,
            deliver_rps: float | None, timeout: float) -> dict[str, Any]:
    """The backlog figures (see the module docstring). The backlog waits with no worker
    running rather than behind a sink refusing connections: a refused sink opens its
    circuit after 5 failures and then defers the rest without attempting them, so both end
    in the same state, N deliveries waiting in Redis; this measures that state and its
    drain, not the retries' schedule."""
    config = one_sink_config(stack, sink)
    body, signature = ticket_body(stack.run_dir)
    stack.flush()
    assert stack.redis is not None
    # The run's shared hello and receive servers (started and warmed up by the receive
    # scenario when it ran; here otherwise).
    running = stack.serve({"hello": stack.hello_command(), WEB: stack.web_command(config)})
    stack.warm_up(running.values(), body, signature)
    urls = {"hello": running["hello"].url, "receive": running[WEB].url}
    empty = alternate(urls, body, signature, seconds, rounds)
    stack.flush()
    started = time.monotonic()
    preload(config, count)
    publish_s = time.monotonic() - started
    progress(f"backlog of {count} published in {publish_s:.1f}s; receive turns with it in Redis")
    used_backlog = int(stack.redis.info("memory")["used_memory"])
    # An append-only file rewrite (a forked child copying the whole dataset) competes for
    # the same cores while the turns run: counted, so a low ratio can be told apart.
    turns = _Rewrites(stack.redis)
    full = alternate(urls, body, signature, seconds, rounds)
    rewrites = turns.count()
    received = int(stack.redis.zcard("gw:tickets"))
    waiting = count + received
    sink.reset()
    during_drain = _Rewrites(stack.redis)
    with MemoryWatch() as memory:
        procs = stack.start_workers(config, 2, name="worker-backlog")
        for proc in procs:
            memory.watch(proc.pid)
        try:
            drain = watch_drain(stack, sink, waiting, procs, timeout)
        finally:
            memory.sample()
            stack.stop(*procs)
    drain_rewrites = during_drain.count()
    # Emptied here, with time to do it: freeing ~100,000 deliveries' keys outlasts the bench
    # client's 5 s read timeout on a busy machine (the next scenario's flush timed out once).
    with redis.Redis.from_url(stack.redis_url, socket_timeout=timeout) as slow:
        slow.flushall()
    ratio_empty = empty["receive"] / empty["hello"]
    ratio_full = full["receive"] / full["hello"]
    return {
        "backlog_count": count,
        "backlog_publish_rps": round(count / publish_s, 1),
        "backlog_used_memory_mb": round(used_backlog / 2**20, 1),
        "backlog_aof_rewrites_during_turns": rewrites,
        "backlog_drained": waiting,
        "backlog_drain_rps": drain.rps,
        "backlog_drain_ratio": ratio(drain.rps, deliver_rps),
        "backlog_drain_cpu_us_per_delivery": drain.cpu_us,
        "backlog_duplicates": drain.duplicates,
        # A rewrite of the ~160 MB dataset's append-only file forks and copies it on the same
        # cores while the workers drain: counted, so a low drain ratio can be told apart.
        "backlog_aof_rewrites_during_drain": drain_rewrites,
        "backlog_worker_rss_mb": round(memory.peak_mb, 1),
        "receive_ratio_empty": round(ratio_empty, 3),
        "receive_ratio_with_backlog": round(ratio_full, 3),
        "receive_ratio_backlog": round(ratio_full / ratio_empty, 3),
    }


class _Rewrites:
    """Counts the append-only file rewrites that ran during a span: those started in it
    (Redis' ``total_forks``: Redis 6.2 has no count of rewrites, and nothing else forks
    here, the bench Redis saves no RDB) and one already under way when it began."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.forks = self._forks()
        self.running = int(client.info("persistence").get("aof_rewrite_in_progress", 0))

    def _forks(self) -> int:
        return int(self.client.info("stats").get("total_forks", 0))

    def count(self) -> int:
        """Rewrites that ran since this was made."""
        return self._forks() - self.forks + self.running


# -- bytes ---------------------------------------------------------------------------------
def receive_data(index: int) -> dict[str, Any]:
    """A ticket create's data as the receive endpoint takes it, with a ~400-byte message."""
    return {
        "subject": f"Cannot export the monthly report #{index}",
        "message": MESSAGE_400,
        "customer_email": "bench@example.com",
        "customer_name": "Bench Client",
        "priority": "high",
    }


def used_memory(client: redis.Redis) -> int:
    """Redis' ``used_memory`` less what is not stored data: client query and output buffers
    and the append-only file's buffer, which come and go with the load (a reply being
    written, a burst of writes not yet flushed) rather than with what is kept."""
    info = client.info("memory")
    transient = sum(int(info.get(name, 0)) for name in ("mem_clients_normal", "mem_clients_slaves", "mem_aof_buffer"))
    return int(info["used_memory"]) - transient


def create_tickets(config: Path, count: int, first: int = 0) -> None:
    """``count`` tickets through :func:`gateway.publish.tickets.create_ticket`: the write
    the receive endpoint makes (ticket, ticket.created event, deliveries), in this process."""
    from gateway.publish.schemas import TicketCreateData
    from gateway.publish.tickets import create_ticket

    runtime = runtime_for(config)
    schema = TicketCreateData()  # the receive endpoint's own validation and defaults
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: create_ticket(runtime, schema.load(receive_data(i)), None),
                          range(first, first + count)))
    finally:
        runtime.redis.close()


def redis_bytes(stack: Stack, sink: SinkHandle, count: int, timeout: float) -> dict[str, Any]:
    """``redis_bytes_per_ticket`` (after delivery), ``redis_bytes_per_pending`` (while the
    delivery waits) and where the bytes are (``redis_bytes_breakdown``)."""
    config = stack.write_config("bytes", [sink_table("fast", sink)])
    stack.flush()
    assert stack.redis is not None
    client = stack.redis
    # Warm-up on another key prefix (no worker reads it): the scripts cached, the pools made,
    # so the baseline after it holds everything that does not grow with the tickets.
    create_tickets(stack.write_config("bytes-warm", [sink_table("warm", sink)], gateway={"key_prefix": "warm:"}), 10)
    before = used_memory(client)
    create_tickets(config, count)
    pending = used_memory(client)
    sink.reset()
    procs = stack.start_workers(config, 2, name="worker-bytes")
    try:
        sink.wait_for(count, timeout, procs)
    finally:
        stack.stop(*procs)
    delivered = used_memory(client)
    return {
        "redis_bytes_count": count,
        "redis_bytes_per_pending": round((pending - before) / count),
        "redis_bytes_per_ticket": round((delivered - before) / count),
        "redis_bytes_breakdown": breakdown(client, "gw:", "fast", count),
    }


def breakdown(client: redis.Redis, prefix: str, sink: str, tickets: int) -> dict[str, Any]:
    """``MEMORY USAGE`` (bytes) of each key kind of the newest ticket, with the hash's
    encoding, and the indexes' bytes per entry (whole sorted sets and hashes over ``tickets``)."""
    def usage(key: str) -> int:
        return int(client.memory_usage(key, samples=0) or 0)

    ticket_id = client.zrange(f"{prefix}tickets", -1, -1)[0].decode()
    delivery_id = client.zrange(f"{prefix}deliveries", -1, -1)[0].decode()
    event_id = client.hget(f"{prefix}delivery:{delivery_id}", "event_id").decode()  # type: ignore[union-attr]
    keys = {
        "ticket": f"{prefix}ticket:{ticket_id}",
        "ticket_log": f"{prefix}ticket:{ticket_id}:log",
        "event": f"{prefix}event:{event_id}",
        "delivery": f"{prefix}delivery:{delivery_id}",
        "attempts": f"{prefix}delivery:{delivery_id}:attempts",
    }
    out: dict[str, Any] = {name: usage(key) for name, key in keys.items()}
    out["delivery_encoding"] = client.object("encoding", keys["delivery"]).decode()  # type: ignore[union-attr]
    out["delivery_fields"] = int(client.hlen(keys["delivery"]))
    out["ticket_json_bytes"] = int(client.strlen(keys["ticket"]))
    out["event_json_bytes"] = int(client.strlen(keys["event"]))
    for name in ("tickets", "ticket_numbers", "events", "deliveries", f"sink:{sink}:deliveries"):
        out[f"index_{name.replace(f'sink:{sink}:', 'sink_')}_per_entry"] = round(usage(prefix + name) / tickets)
    return out


# -- fan-out ---------------------------------------------------------------------------------
def fanout(stack: Stack, sink: SinkHandle, seconds: float, rounds: int, deliver_count: int,
           memory: MemoryWatch, timeout: float) -> dict[str, Any]:
    """``receive_ratio_fanout20`` and ``deliver_rps_fanout20``. The 20 sinks all post to the
    fast bench sink (distinct delivery ids, so it counts each): 20 sinks' worth of claims,
    attempts and records, one sink process."""
    body, signature = ticket_body(stack.run_dir)
    stack.flush()
    twenty = stack.write_config("fanout-twenty", [sink_table(f"s{i}", sink) for i in range(FANOUT_SINKS)],
                                gateway={"key_prefix": "twenty:"})
    # One sink: the run's shared receive server (one subscribed sink, the one the receive
    # figures are measured on); twenty on its own key prefix, beside it.
    running = stack.serve({WEB: stack.web_command(one_sink_config(stack, sink)),
                           "web-fanout-twenty": stack.web_command(twenty)})
    stack.warm_up(running.values(), body, signature)
    rate = alternate({"one": running[WEB].url, "twenty": running["web-fanout-twenty"].url}, body, signature,
                     seconds, rounds)
    events = max(1, deliver_count // FANOUT_SINKS)
    drained = drain_rate(stack, sink, twenty, events * FANOUT_SINKS, 2, memory, timeout,
                         loader=lambda config, _count: preload(config, events))
    return {
        "receive_fanout1_rps": round(rate["one"], 1),
        "receive_fanout20_rps": round(rate["twenty"], 1),
        "receive_ratio_fanout20": ratio(rate["twenty"], rate["one"]),
        "deliver_rps_fanout20": drained["rps"],
        "deliver_fanout20_cpu_us_per_delivery": drained["cpu_us"],
        "deliver_fanout20_duplicates": drained["duplicates"],
    }


# -- retention -------------------------------------------------------------------------------
@dataclasses.dataclass
class MemoryTrace:
    """``used_memory`` samples (seconds since the start, bytes) taken in the background."""

    client: redis.Redis
    interval: float = 0.25
    samples: list[tuple[float, int]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._start, used_memory(self.client)))
            self._stop.wait(self.interval)


def growth_ratio(samples: list[tuple[float, int]], baseline: int, one_period: float, end_window: float) -> float:
    """Memory growth at the end (the median over the last ``end_window`` seconds, so one
    sample between two expiry sweeps does not decide it) over the growth once the first
    ``one_period`` seconds' volume was in (the sample closest to that time)."""
    if not samples:
        raise ValueError("no samples")
    last = samples[-1][0]
    at_one = min(samples, key=lambda s: abs(s[0] - one_period))[1] - baseline
    at_end = statistics.median(m for t, m in samples if t >= last - end_window) - baseline
    if at_one <= 0:
        raise ValueError(f"no growth after one retention period ({at_one} bytes)")
    return round(at_end / at_one, 3)


def paced(total_s: float, rate: float, action: Callable[[int], object], tick: float = 0.1) -> int:
    """Call ``action(i)`` ``rate`` times a second (in ticks of ``tick`` s, 4 threads) for
    ``total_s`` seconds; the number of calls."""
    per_tick = max(1, round(rate * tick))
    started = time.monotonic()
    done = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        while time.monotonic() - started < total_s:
            list(pool.map(action, range(done, done + per_tick)))
            done += per_tick
            # The schedule, not the last call, sets the next tick: a slow tick is caught up.
            time.sleep(max(0.0, (done / per_tick) * tick - (time.monotonic() - started)))
    return done


def retention(stack: Stack, sink: SinkHandle, retention_s: float, periods: int, rate: float,
              timeout: float) -> dict[str, Any]:
    """``retention_memory_ratio`` (see the module docstring). Events rather than tickets:
    a ticket is kept until deleted, by design; its events and deliveries expire."""
    from bench.retention_worker import short_retention_runtime
    from gateway.events import Event
    from gateway.publish.plugin_services import provide
    from gateway.publish.publisher import publish

    config = stack.write_config("retention", [sink_table("fast", sink)])
    stack.flush()
    assert stack.redis is not None
    sink.reset()
    procs = [
        stack.procs.start(f"worker-retention-{i}", [PYTHON, "-m", "bench.retention_worker", "--config",
                                                    str(config), "--retention-s", str(retention_s)])
        for i in range(2)
    ]
    runtime = provide(short_retention_runtime(str(config), retention_s))
    try:
        # Warm-up: one event delivered. It expires after retention_s, sooner than the workers
        # start on a busy machine, so it is published again until one reaches the sink.
        deadline = time.monotonic() + timeout
        while True:
            publish(runtime, Event.new("ticket.created", {"ticket": sample_ticket(0)}))
            try:
                sink.wait_for(1, min(retention_s, max(0.0, deadline - time.monotonic())), procs)
                break
            except RuntimeError:
                if time.monotonic() >= deadline or all(p.poll() is not None for p in procs):
                    raise
        baseline = used_memory(stack.redis)
        trace = MemoryTrace(stack.redis)
        trace.start()
        try:
            published = paced(retention_s * periods, rate, lambda i: publish(
                runtime, Event.new("ticket.created", {"ticket": sample_ticket(i)})))
        finally:
            trace.stop()
        delivered = sink.counts()["deliveries"]
    finally:
        runtime.redis.close()
        stack.stop(*procs)
    return {
        "retention_s": retention_s,
        "retention_periods": periods,
        "retention_published": published,
        "retention_delivered": delivered,
        "retention_memory_ratio": growth_ratio(trace.samples, baseline, retention_s, retention_s),
        "retention_growth_mb": round((trace.samples[-1][1] - baseline) / 2**20, 2),
        # ~20 samples across the run: flat after the first periods, or not.
        "retention_trace_mb": [round((m - baseline) / 2**20, 2)
                               for _, m in trace.samples[:: max(1, len(trace.samples) // 20)]],
    }
