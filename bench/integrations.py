"""Integrations managed at runtime: what a sinks store costs the publish path, and how soon a
change is used.

* ``publish_100_sinks_ratio``: the time one publish takes (``gateway.publish.publish``, in
  this process, on the bench Redis) with 100 sinks created through the sinks API, 10 of them
  subscribed to the event, over the time with 1 sink subscribed. Measured in alternating
  rounds, so load from elsewhere hits both alike. It includes writing 10 deliveries instead
  of 1; ``publish_100_sinks_1_subscribed_ratio`` (100 sinks, 1 subscribed: the same write
  as the 1-sink case) shows what the routing itself costs.
* ``config_change_visible_ms``: ``gateway web`` (2 processes) and 2 ``gateway worker``
  processes run; a sink's URL is switched between two bench sinks with ``PATCH
  /api/sinks/<name>``, and right after the answer a burst of tickets is posted. The figure
  is the median, over the rounds, of the time from the PATCH's answer until every ticket of
  the burst has been delivered at the new URL; ``config_change_baseline_ms`` is the same
  burst with no change before it, in the same run. Any ticket of a burst delivered at the
  old URL fails the scenario (``config_change_stale_deliveries`` must be 0).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import time
from pathlib import Path
from typing import Any

import requests

from bench.procs import MemoryWatch
from bench.report import progress
from bench.stack import SECRET, SinkHandle, Stack
from gateway.runtime import Integrations, Runtime

BURST = 10
WORKERS = 2
ROUND_EVENTS = 50


def _ticket(index: int) -> dict[str, Any]:
    return {"subject": f"bench {time.time_ns() // 1000}", "message": f"Integration bench {index}",
            "customer_email": "bench@example.com", "priority": "medium", "category": None, "customer_name": None}


def publish_cost(stack: Stack, count: int) -> dict[str, Any]:
    """Per-publish time with 1 API sink vs 100 (10 subscribed): ``publish_100_sinks_ratio``."""
    from gateway.config import parse_config
    from gateway.events import Event
    from gateway.plugins import load_plugins
    from gateway.publish.plugin_services import provide
    from gateway.publish.publisher import publish

    plugins = load_plugins()
    # (sinks, subscribed): the comparison, and 100 sinks with 1 subscribed, which
    # writes what the 1-sink case writes and so shows the cost of the routing alone.
    cases = {"one": (1, 1), "hundred": (100, 10), "hundred_one": (100, 1)}
    times: dict[str, list[float]] = {case: [] for case in cases}
    runtimes = {}
    stack.flush()
    for case, (sinks, subscribed) in cases.items():
        doc = {"gateway": {"redis_url": stack.redis_url, "data_dir": str(stack.run_dir / "data"),
                           "key_prefix": f"{case}:", "admin_token": "bench-admin-token-0123456789abcdef0123"},
               "delivery": {"allow_private_networks": True}}
        settings = parse_config(doc, plugins)
        fill_store(provide(StoreFiller.from_settings(settings, plugins, start_embedded=False)), sinks, subscribed)
        # The measured runtime reads the store once, as a process started after the changes.
        runtime = provide(Runtime.from_settings(settings, plugins, start_embedded=False))
        assert len(runtime.subscribers("ticket.created")) == subscribed
        runtimes[case] = runtime
    rounds = max(1, count // ROUND_EVENTS)
    for _ in range(rounds):
        for case in (*cases, *reversed(cases)):  # alternating, so drift in machine load hits all alike
            runtime = runtimes[case]
            started = time.perf_counter()
            for i in range(ROUND_EVENTS // 2):
                publish(runtime, Event.new("ticket.created", {"ticket": _ticket(i)}))
            times[case].append((time.perf_counter() - started) / (ROUND_EVENTS // 2))
    us = {case: statistics.median(values) * 1e6 for case, values in times.items()}
    return {"publish_1_sink_us": round(us["one"], 1), "publish_100_sinks_us": round(us["hundred"], 1),
            "publish_100_sinks_1_subscribed_us": round(us["hundred_one"], 1),
            "publish_100_sinks_ratio": round(us["hundred"] / us["one"], 2),
            "publish_100_sinks_1_subscribed_ratio": round(us["hundred_one"] / us["one"], 2),
            "publish_events_per_case": rounds * ROUND_EVENTS}


class StoreFiller(Runtime):
    """A runtime that writes sinks through the sinks store (:mod:`gateway.integrations.store`,
    the API's own functions: validation, audit entry, version bump) without rebuilding its
    own view of them after each write, as an API process does: that rebuild reads every
    stored sink again, so 100 creates in a row cost 100 x 100 sink loads of set-up. Nothing
    is measured on it; the measured runtimes are built afterwards and read the store once."""

    _view: Integrations | None = None

    def reload(self) -> Integrations:
        """The view as of the first read (the store's writes do not need a newer one)."""
        if self._view is None:
            self._view = super().reload()
        return self._view


def fill_store(filler: Runtime, sinks: int, subscribed: int) -> None:
    """``sinks`` generic webhooks created through the store (by ``filler``, a
    :class:`StoreFiller`), the first ``subscribed`` of them
    to ``ticket.created`` (the others to ``ticket.resolved``). Each signs with the bench's
    secret, as the bench's file sinks do, rather than one generated per sink: the log
    redaction then compiles its pattern of known secrets once, not once per new sink."""
    from gateway.integrations import store

    try:
        for i in range(sinks):
            events = ["ticket.created"] if i < subscribed else ["ticket.resolved"]
            store.create(filler, {"name": f"sink-{i:03d}", "type": "generic_webhook", "events": events,
                                  "url": f"http://127.0.0.1:9/hook/{i}", "secret": SECRET}, "bench")
    finally:
        filler.redis.close()


def _post_ticket(url: str, index: int) -> None:
    body = json.dumps({"event": "ticket.create", "data": _ticket(index)}, separators=(",", ":")).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = requests.post(url, data=body, timeout=60,
                           headers={"Content-Type": "application/json", "X-Webhook-Signature": signature})
    if answer.status_code != 201:
        raise RuntimeError(f"receive answered {answer.status_code}: {answer.text[:200]}")


def _burst_ms(receive_url: str, target: SinkHandle, workers: list[Any], since: float) -> float:
    """Post BURST tickets; ms from ``since`` until the last of them arrived at ``target``."""
    for i in range(BURST):
        _post_ticket(receive_url, i)
    seen = target.wait_for(BURST, 60, workers)
    return (float(seen["last"]) - since) * 1000


def config_change(stack: Stack, old: SinkHandle, new: SinkHandle, rounds: int, memory: MemoryWatch) -> dict[str, Any]:
    """``config_change_visible_ms`` and its baseline, with 2 web and 2 worker processes."""
    stack.flush()
    config: Path = stack.write_config("integrations", [])
    # The workers start while the web server does: their start-ups overlap.
    workers = stack.start_workers(config, WORKERS, name="integrations-worker")
    web = stack.serve({"web-integrations": stack.web_command(config)})["web-integrations"]
    receive_url, base = web.url, web.base_url
    for proc in workers:
        memory.watch(proc.pid)
    token = (stack.run_dir / "data" / "admin_token").read_text().strip()
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {token}"
    try:
        created = admin.post(base + "/api/sinks", timeout=60, json={
            "name": "live", "type": "generic_webhook", "url": old.url, "events": ["ticket.created"]})
        if created.status_code != 201:
            raise RuntimeError(f"POST /api/sinks answered {created.status_code}: {created.text[:300]}")
        old.reset()
        _burst_ms(receive_url, old, workers, time.time())  # warm-up: connections, pools, views
        visible, baseline, stale = [], [], 0
        progress(f"{rounds} rounds of PATCH + {BURST} tickets")
        current, other = old, new
        for _ in range(rounds):
            current.reset()
            baseline.append(_burst_ms(receive_url, current, workers, time.time()))
            other.reset()
            current.reset()
            answer = admin.patch(base + "/api/sinks/live", json={"url": other.url}, timeout=60)
            answered = time.time()
            if answer.status_code != 200:
                raise RuntimeError(f"PATCH answered {answer.status_code}: {answer.text[:300]}")
            visible.append(_burst_ms(receive_url, other, workers, answered))
            stale += int(current.counts()["deliveries"])
            current, other = other, current
    finally:
        memory.sample()
        stack.stop(*workers, timeout=5)
    if stale:
        raise RuntimeError(f"{stale} tickets posted after a PATCH was answered went to the old URL")
    return {"config_change_visible_ms": round(statistics.median(visible), 1),
            "config_change_visible_max_ms": round(max(visible), 1),
            "config_change_baseline_ms": round(statistics.median(baseline), 1),
            "config_change_ratio": round(statistics.median(visible) / statistics.median(baseline), 2),
            "config_change_stale_deliveries": stale, "config_change_rounds": rounds}
