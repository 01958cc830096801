"""Receive throughput: signed ticket creates through gunicorn (2 workers) with a real
Redis, against a Flask hello-world POST endpoint served the same way, in the same run;
and the sink's own capacity, so the delivery figures can show the sink was not the limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import load
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
    """How many deliveries/s the fast sink itself takes (wrk straight at it)."""
    body, _ = ticket_body(stack.run_dir)
    result = load.post_load(sink.url, body, None, CONNECTIONS, seconds)
    sink.reset()
    return {"sink_capacity_rps": round(result.rps), "sink_capacity_p99_ms": result.latency_p99_ms}


def receive_vs_hello(
    stack: Stack, sink: SinkHandle, sink_table: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """``hello_rps``, ``receive_rps`` and their ratio; hello first, each alone on the CPU."""
    body, signature = ticket_body(stack.run_dir)

    hello_url, hello_proc = stack.start_hello()
    load.post_load(hello_url, body, signature, CONNECTIONS, 1)  # warm-up
    hello = load.post_load(hello_url, body, signature, CONNECTIONS, seconds)
    stack.stop(hello_proc)

    stack.flush()
    config = stack.write_config("receive", [sink_table] if sink_table else [])
    web_url, web_proc = stack.start_web(config)
    load.post_load(web_url, body, signature, CONNECTIONS, 1)
    receive = load.post_load(web_url, body, signature, CONNECTIONS, seconds)
    stack.stop(web_proc)

    assert stack.redis is not None
    created = stack.redis.zcard("gw:tickets")
    if receive.status_errors or receive.errors:
        raise RuntimeError(
            f"receive answered {receive.status_errors} non-2xx and {receive.errors} socket errors; "
            f"see {stack.run_dir / 'web.log'}"
        )
    return {
        "hello_rps": round(hello.rps, 1),
        "receive_rps": round(receive.rps, 1),
        "receive_ratio": round(receive.rps / hello.rps, 3) if hello.rps else 0.0,
        "receive_p99_ms": receive.latency_p99_ms,
        "hello_p99_ms": hello.latency_p99_ms,
        "receive_tickets_stored": created,
    }
