"""Receive throughput: signed ticket creates through gunicorn (2 workers) with a real
Redis, against a Flask hello-world POST endpoint served the same way, in the same run;
and the sink's own capacity, so the delivery figures can show the sink was not the limit."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench import load
from bench.deliver import WEB, one_sink_config, sink_table
from bench.procs import cpu_seconds
from bench.stack import SECRET, SinkHandle, Stack
from gateway.signing import hex_signature

CONNECTIONS = 16
TICKET = {
    "event": "ticket.create",
    "data": {
        "subject": "Cannot export the monthly report",
        "message": "The export button does nothing since this morning; we need the report today.",
        "customer_email": "bench@example.com",
        "customer_name": "Bench Client",
        "priority": "high",
    },
}


def ticket_body(run_dir: Path) -> tuple[Path, str]:
    """The request body file and its X-Webhook-Signature."""
    body = json.dumps(TICKET, separators=(",", ":")).encode()
    path = run_dir / "ticket.json"
    path.write_bytes(body)
    return path, hex_signature(body, SECRET)


def sink_capacity(stack: Stack, sink: SinkHandle, seconds: float) -> dict[str, Any]:
    """How many requests/s the fast sink itself takes (wrk straight at it)."""
    body, _ = ticket_body(stack.run_dir)
    result = load.post_load(sink.url, body, None, CONNECTIONS, seconds)
    sink.reset()
    return {"sink_capacity_rps": round(result.rps), "sink_capacity_p99_ms": result.latency_p99_ms}


class CpuTally:
    """CPU seconds spent per part (server, Redis, wrk) over some loaded turns."""

    def __init__(self) -> None:
        self.server = self.redis = self.client = 0.0
        self.requests = 0
        self.redis_reads = 0

    def redis_reads_per_request(self) -> float:
        """Socket reads Redis made per request: 1 with a round trip of its own, less when
        concurrent requests share one (the group commit; 0.25 = four to a round trip)."""
        return round(self.redis_reads / max(1, self.requests), 2)

    def per_request_us(self) -> dict[str, float]:
        n = max(1, self.requests)
        return {"server": 1e6 * self.server / n, "redis": 1e6 * self.redis / n, "wrk": 1e6 * self.client / n}


def _loaded_turn(
    stack: Stack, server_pid: int, url: str, body: Path, signature: str, seconds: float, tally: CpuTally
) -> load.WrkResult:
    redis_pid = stack.redis_pid
    server0, redis0, client0 = cpu_seconds(server_pid), cpu_seconds(redis_pid), _children_cpu()
    reads0 = _redis_reads(stack)
    result = load.post_load(url, body, signature, CONNECTIONS, seconds)
    tally.redis_reads += _redis_reads(stack) - reads0
    tally.server += cpu_seconds(server_pid) - server0
    tally.redis += cpu_seconds(redis_pid) - redis0
    tally.client += _children_cpu() - client0
    tally.requests += result.requests
    return result


def _redis_reads(stack: Stack) -> int:
    # Socket reads Redis processed (INFO stats, Redis >= 6): a pipelined batch is one read.
    assert stack.redis is not None
    return int(stack.redis.info("stats").get("total_reads_processed", 0))


def _children_cpu() -> float:
    # wrk runs as our child: once reaped its CPU time shows up here.
    times = os.times()
    return times.children_user + times.children_system


def receive_vs_hello(stack: Stack, sink: SinkHandle, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """``hello_rps``, ``receive_rps`` and their ratio. The servers run side by side (an
    idle one costs nothing) and are loaded in turns, hello, receive, receive, hello, ...,
    so a change in what else the machine is doing hits all alike. CPU time per request
    of each part is measured too: on a busy machine it is steadier than the rate.

    ``replicated`` is receive with ``durability = "replicated"`` on a master with one
    replica on loopback (TCP): each 201 waits for the replica's confirmation (WAIT).

    hello and receive are the run's shared servers (the backlog's turns load them too); all
    four start side by side and warm up together before the first turn."""
    body, signature = ticket_body(stack.run_dir)
    stack.flush()
    config = one_sink_config(stack, sink)
    replicated_config = stack.write_config("replicated", [sink_table("fast", sink)], gateway={
        "redis_url": stack.start_replicated_redis(), "durability": "replicated", "durability_replicas": 1})
    running = stack.serve({"hello": stack.hello_command(), WEB: stack.web_command(config),
                           "floor": stack.floor_command(config),
                           "web-replicated": stack.web_command(replicated_config)})
    stack.warm_up(running.values(), body, signature)
    servers = {name: (running[server].url, running[server].proc.pid)
               for name, server in (("hello", "hello"), ("receive", WEB), ("floor", "floor"),
                                    ("replicated", "web-replicated"))}
    assert stack.redis is not None
    stored_before = stack.redis.zcard("gw:tickets")
    turns: dict[str, list[load.WrkResult]] = {name: [] for name in servers}
    cpu = {name: CpuTally() for name in servers}
    order = ("hello", "receive", "floor", "replicated")
    for index in range(rounds):
        for name in order if index % 2 == 0 else reversed(order):
            url, pid = servers[name]
            turns[name].append(_loaded_turn(stack, pid, url, body, signature, seconds / rounds, cpu[name]))
    # The floor rewrites one ticket (stored in the warm-up): the count grows with receive's alone.
    stored = stack.redis.zcard("gw:tickets") - stored_before
    for name, log in (("receive", f"{WEB}.log"), ("replicated", "web-replicated.log")):
        bad = [r for r in turns[name] if r.status_errors or r.errors]
        if bad:
            raise RuntimeError(
                f"{name} answered {bad[0].status_errors} non-2xx and {bad[0].errors} socket errors; "
                f"see {stack.run_dir / log}"
            )
    rate = {name: sum(r.ok for r in runs) / sum(r.duration_s for r in runs) for name, runs in turns.items()}
    hello_rps, receive_rps = rate["hello"], rate["receive"]
    hello_cpu, receive_cpu = cpu["hello"].per_request_us(), cpu["receive"].per_request_us()
    floor_cpu = cpu["floor"].per_request_us()
    return {
        "hello_rps": round(hello_rps, 1),
        "receive_rps": round(receive_rps, 1),
        "receive_ratio": round(receive_rps / hello_rps, 3) if hello_rps else 0.0,
        # The durable write alone, with no per-request work of ours (bench/floor.py).
        "receive_floor_rps": round(rate["floor"], 1),
        # durability = "replicated": every 201 waited for a local replica's WAIT confirmation.
        "receive_replicated_rps": round(rate["replicated"], 1),
        "receive_ratio_replicated": round(rate["replicated"] / hello_rps, 3) if hello_rps else 0.0,
        "replicated_cpu_us_per_request": {k: round(v) for k, v in cpu["replicated"].per_request_us().items()},
        "replicated_p99_ms": max(r.latency_p99_ms for r in turns["replicated"]),
        "receive_floor_ratio": round(rate["floor"] / hello_rps, 3) if hello_rps else 0.0,
        "floor_cpu_us_per_request": {k: round(v) for k, v in floor_cpu.items()},
        "receive_rounds_rps": [round(r.rps) for r in turns["receive"]],
        "hello_rounds_rps": [round(r.rps) for r in turns["hello"]],
        "receive_p99_ms": max(r.latency_p99_ms for r in turns["receive"]),
        "hello_p99_ms": max(r.latency_p99_ms for r in turns["hello"]),
        # Each 201 is a stored ticket (wrk stops counting at its deadline: late answers add a few more).
        "receive_answered_201": sum(r.ok for r in turns["receive"]),
        "receive_tickets_stored": stored,
        "hello_cpu_us_per_request": {k: round(v) for k, v in hello_cpu.items()},
        "receive_cpu_us_per_request": {k: round(v) for k, v in receive_cpu.items()},
        # What the ratio would be if CPU were the only limit (an idle machine): total CPU
        # per hello request over total CPU per receive request, wrk's share included.
        "receive_ratio_by_cpu": round(sum(hello_cpu.values()) / sum(receive_cpu.values()), 3),
        "receive_redis_reads_per_request": cpu["receive"].redis_reads_per_request(),
        "floor_redis_reads_per_request": cpu["floor"].redis_reads_per_request(),
    }
