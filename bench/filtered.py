"""Content filters on the receive path: what compiled filters cost a publish.

* ``receive_ratio_filtered``: signed ticket creates/s through ``gateway web`` (gunicorn, 2
  workers) with 10 sinks subscribed to ``ticket.created``, each holding a 5-condition
  ``filter`` (``$in``, ``$endsWith``, ``$regex``, a plain value, ``$neq``) that the bench
  ticket passes, over the same 10 sinks without filters. Both servers run side by side on
  the bench Redis (their own key prefixes) and are loaded in alternating turns, so load from
  elsewhere hits both alike. Every filter passes, so both write the same 10 deliveries per
  ticket and the difference is the filters' evaluation (all 5 conditions each: the worst
  case; a failing condition stops a filter early). Goal: >= 0.9.
* ``receive_filtered_rps`` / ``receive_unfiltered_rps``: the two rates.
* ``route_filtered_us`` / ``route_unfiltered_us``: in this process, the time to route one
  event (:func:`gateway.publish.publisher.route`: subscribers, filters, delivery rows; no
  Redis) for the same two configurations: the filters' cost alone, steady even on a busy
  machine where the HTTP rates are noisy.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import load
from bench.deliver import sink_table
from bench.receive import CONNECTIONS, ticket_body
from bench.stack import SinkHandle, Stack

SINKS = 10
FILTER: dict[str, Any] = {
    "event": "ticket.created",
    "data.ticket.priority": {"$in": ["high", "urgent"]},
    "data.ticket.customer_email": {"$endsWith": "@example.com"},
    "data.ticket.subject": {"$regex": "(?i)export|report"},
    "data.ticket.status": {"$neq": "closed"},
}


def receive_filtered_vs_unfiltered(stack: Stack, sink: SinkHandle, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """``receive_ratio_filtered``: 10 filtered sinks vs the same 10 unfiltered, same run."""
    body, signature = ticket_body(stack.run_dir)
    stack.flush()
    configs = {
        name: stack.write_config(name, [sink_table(f"s{i}", sink, **extra) for i in range(SINKS)],
                                 gateway={"key_prefix": f"{name}:"})
        for name, extra in (("unfiltered", {}), ("filtered", {"filter": FILTER}))
    }
    started = stack.serve({f"web-{name}": stack.web_command(path) for name, path in configs.items()})
    stack.warm_up(started.values(), body, signature)
    running = {name: started[f"web-{name}"] for name in configs}
    turns: dict[str, list[load.WrkResult]] = {name: [] for name in running}
    order = ("unfiltered", "filtered")
    for index in range(rounds):
        for name in order if index % 2 == 0 else reversed(order):
            turns[name].append(load.post_load(running[name].url, body, signature, CONNECTIONS, seconds / rounds))
    stored = {name: stack.redis.zcard(f"{name}:tickets") for name in running} if stack.redis else {}
    for name, runs in turns.items():
        bad = [r for r in runs if r.status_errors or r.errors]
        if bad:
            raise RuntimeError(f"{name} answered {bad[0].status_errors} non-2xx and {bad[0].errors} socket errors; "
                               f"see {stack.run_dir / f'web-{name}.log'}")
    rate = {name: sum(r.ok for r in runs) / sum(r.duration_s for r in runs) for name, runs in turns.items()}
    return {
        **route_cost(stack, sink),
        "receive_unfiltered_rps": round(rate["unfiltered"], 1),
        "receive_filtered_rps": round(rate["filtered"], 1),
        "receive_ratio_filtered": round(rate["filtered"] / rate["unfiltered"], 3) if rate["unfiltered"] else 0.0,
        "receive_filtered_tickets_stored": stored,
    }


def route_cost(stack: Stack, sink: SinkHandle, events: int = 2_000) -> dict[str, Any]:
    """``route_filtered_us`` and ``route_unfiltered_us``: routing alone, in this process."""
    from bench.receive import TICKET
    from gateway.config import parse_config
    from gateway.events import Event
    from gateway.plugins import load_plugins
    from gateway.publish.plugin_services import provide
    from gateway.publish.publisher import route
    from gateway.runtime import Runtime

    plugins = load_plugins()
    event = Event.new("ticket.created", {"ticket": {**TICKET["data"], "id": "t1", "status": "new"}})
    times: dict[str, list[float]] = {}
    for name, extra in (("unfiltered", {}), ("filtered", {"filter": FILTER})):
        doc = {"gateway": {"redis_url": stack.redis_url, "data_dir": str(stack.run_dir / "data"),
                           "key_prefix": f"route-{name}:", "admin_token": "bench-admin-token-0123456789abcdef0123"},
               "delivery": {"allow_private_networks": True},
               "sinks": [sink_table(f"s{i}", sink, **extra) for i in range(SINKS)]}
        runtime = provide(Runtime.from_settings(parse_config(doc, plugins), plugins, start_embedded=False))
        assert len(route(runtime, event).rows) == SINKS  # every filter passes: the same rows
        samples = []
        for _ in range(10):
            started = time.perf_counter()
            for _ in range(events // 10):
                route(runtime, event)
            samples.append((time.perf_counter() - started) / (events // 10))
        times[name] = samples
    us = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    return {"route_unfiltered_us": round(us["unfiltered"], 1), "route_filtered_us": round(us["filtered"], 1)}
