"""A destination that refuses connections for a while, then comes back (issue 7, item 4).

A gunicorn-served gateway and a worker process deliver to two local receivers, one per
sink. Both stop listening (open connections dropped too); tickets keep arriving. Sink
"rec" opens its circuit (seen through the API and the CLI); sink "steady", whose threshold
is out of reach, keeps retrying on the schedule. The receivers come back, "rec"'s answering
429 with Retry-After twice before it accepts. Then: everything was delivered to both;
every retry was planned at the configured schedule's delay within the jitter bounds (or
at Retry-After after a 429) and none happened before its planned time; the circuit closed
again, and while it was open "rec" was charged far fewer attempts than "steady".
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from support.configs import OUTAGE_ADMIN_TOKEN, outage_config, write_config
from support.delivery import engine_state, stored_attempts, wait_until_logged_delivered
from support.load import RECEIVE, wait_under_load
from support.processes import KillableProcess, free_port, start_killable_web, start_killable_worker

SCHEDULE = [1.0, 2.0, 3.0] + [3.0] * 12
JITTER = 0.2
RETRY_AFTER_S = 5  # not a delay the schedule could produce (at most 3 s x 1.2)
OUTAGE_S = 12.0
TICKETS_DURING_OUTAGE = 20

pytestmark = pytest.mark.slow


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class StateWatcher:
    """Polls GET /api/sinks in a thread and keeps every state it saw, in order."""

    def __init__(self, base_url: str) -> None:
        self.url = f"{base_url}/api/sinks"
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current(self) -> str:
        response = requests.get(self.url, headers={"Authorization": f"Bearer {OUTAGE_ADMIN_TOKEN}"}, timeout=10)
        response.raise_for_status()
        return next(s for s in response.json()["sinks"] if s["name"] == "rec")["state"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.current()
            except requests.RequestException:
                state = None
            if state and (not self.seen or self.seen[-1] != state):
                self.seen.append(state)
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def _cli_state(config: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), "sinks", "--json"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    states = json.loads(result.stdout)
    return next(s for s in states if s["name"] == "rec")["state"]


def test_sink_outage_retries_on_schedule_opens_and_closes_the_circuit_and_honours_retry_after(
    redis_url: str,
    redis_client: redis_lib.Redis,
    tmp_path: Path,
    logs: Path,
    procs: list[KillableProcess],
    destination: Any,
) -> None:
    receiver = destination()
    steady = destination()  # a second destination, down at the same time
    config_doc = outage_config(
        redis_url,
        tmp_path / "data",
        receiver.url,
        retry_schedule=SCHEDULE,
        retry_jitter=JITTER,
        circuit_cooldown=2,
        circuit_max_cooldown=4,
    )
    # "rec" opens its circuit after 3 failures; "steady" never does (threshold 1000), so its
    # deliveries retry on the schedule all through the outage: the schedule's witness.
    config_doc["sinks"][0]["failure_threshold"] = 3
    config_doc["sinks"].append(
        {"name": "steady", "type": "generic_webhook", "url": steady.url, "events": ["ticket.created"]}
    )
    config = write_config(tmp_path / "gateway.toml", config_doc)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs.append(start_killable_web(config, logs / "web.log", port))
    procs.append(start_killable_worker(config, logs / "worker.log"))
    watcher = StateWatcher(base)

    def post(n: int) -> str:
        response = requests.post(
            base + RECEIVE,
            timeout=10,
            json={
                "event": "ticket.create",
                "data": {"subject": f"Outage {n}", "message": "m", "customer_email": f"o{n}@example.com"},
            },
        )
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"]["id"])

    def all_delivered() -> bool:
        return set(tickets) <= receiver.delivered_tickets() and set(tickets) <= steady.delivered_tickets()

    try:
        tickets = [post(0)]
        wait_under_load(all_delivered, "the first deliveries")
        assert watcher.current() == "ok"

        receiver.go_down()
        steady.go_down()
        outage_started = time.monotonic()
        for n in range(1, TICKETS_DURING_OUTAGE + 1):
            tickets.append(post(n))
            time.sleep(OUTAGE_S / 2 / TICKETS_DURING_OUTAGE)
        try:
            wait_under_load(lambda: "circuit_open" in watcher.seen, "the circuit to open")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: states {watcher.seen}, {engine_state(redis_client)}") from None
        assert _cli_state(config) in ("circuit_open", "half_open")  # the CLI tells the same story
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))

        receiver.script(*[(429, {"Retry-After": str(RETRY_AFTER_S)})] * 2)
        receiver.come_back()
        steady.come_back()
        wait_under_load(all_delivered, "every ticket delivered to both sinks after the outage", timeout=90)
        wait_until_logged_delivered(redis_client, 2 * len(tickets))
        wait_under_load(lambda: watcher.current() == "ok", "the circuit to close")
        assert _cli_state(config) == "ok"
    finally:
        watcher.stop()

    # The circuit opened during the outage and closed after it.
    assert watcher.seen[0] == "ok" and watcher.seen[-1] == "ok"
    assert "circuit_open" in watcher.seen, watcher.seen

    logs_by_sink: dict[str, list[list[dict[str, Any]]]] = {"rec": [], "steady": []}
    for key in redis_client.scan_iter("gw:delivery:dlv_*:attempts"):
        log = stored_attempts(redis_client, key)
        logs_by_sink[log[0]["sink"]].append(log)
    assert len(logs_by_sink["rec"]) == len(logs_by_sink["steady"]) == len(tickets)

    rec = check_retries(logs_by_sink["rec"])
    schedule = check_retries(logs_by_sink["steady"])
    assert rec.honoured == 2 and schedule.honoured == 0
    assert schedule.refused >= TICKETS_DURING_OUTAGE * 2  # every delivery retried on the schedule
    # Jitter is really applied: the factors differ from one retry to the next.
    assert max(schedule.ratios) - min(schedule.ratios) > 0.05, schedule.ratios
    # While its circuit was open, "rec" deferred its deliveries instead of charging them
    # attempts: far fewer refused connections than the sink that kept retrying.
    assert 3 <= rec.refused < schedule.refused / 3, (rec.refused, schedule.refused)
    print(
        f"\n{len(tickets)} tickets; refused attempts: {schedule.refused} on the schedule, "
        f"{rec.refused} with the circuit; jitter factors {min(schedule.ratios):.2f}.."
        f"{max(schedule.ratios):.2f}; states {watcher.seen}"
    )


@dataclasses.dataclass
class Retries:
    refused: int = 0
    honoured: int = 0
    ratios: list[float] = dataclasses.field(default_factory=list)


def check_retries(logs: list[list[dict[str, Any]]]) -> Retries:
    """Check every retry in ``logs`` (one attempt log per delivery) against the schedule and
    Retry-After; returns what was seen."""
    seen = Retries()
    for log in logs:
        assert log[-1]["status"] == "delivered", log[-1]
        for this, following in itertools.pairwise(log):
            assert this["status"] == "retrying" and this["next_attempt_at"], this
            planned = _epoch(this["next_attempt_at"]) - _epoch(this["at"]) - this["duration_ms"] / 1000
            # Never attempted before the planned time (rq fires on the second, so it may be later).
            assert _epoch(following["at"]) >= _epoch(this["next_attempt_at"]) - 0.01
            if this["status_code"] == 429:
                seen.honoured += 1
                assert RETRY_AFTER_S - 0.05 <= planned <= RETRY_AFTER_S + 0.5, (planned, this)
                continue
            assert this["error"]["code"] == "connect_error", this
            seen.refused += 1
            step = SCHEDULE[this["attempt"] - 1]
            # The schedule's delay, scaled by a factor within 1 +/- jitter (ms rounding and the
            # moment between the answer and the plan allowed for).
            assert step * (1 - JITTER) - 0.05 <= planned <= step * (1 + JITTER) + 0.3, (step, planned, this)
            seen.ratios.append(planned / step)
    return seen
