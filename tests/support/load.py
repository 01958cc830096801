"""A steady load of careful clients, for the reliability tests: a thread POSTing tickets to
a served gateway, each with its own Idempotency-Key, recording every answer; and the wait
for what happens under such a load."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from gateway import testing

RECEIVE = "/api/webhooks/receive"


def wait_under_load(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """:func:`gateway.testing.wait_until`, polling every 0.2 s: these predicates make HTTP
    requests to servers under load."""
    return testing.wait_until(predicate, what, timeout, interval=0.2)


@dataclasses.dataclass
class Outcome:
    """One request's answer: the HTTP status (0 = no answer), the ticket, Retry-After."""

    key: str
    status: int
    ticket_id: str | None = None
    error: str | None = None
    retry_after: str | None = None
    at: float = 0.0


class Load:
    """A thread POSTing tickets to ``url`` at about ``rate`` per second, each with its own
    Idempotency-Key. With ``retry_unanswered`` a request that got no answer (the server
    died under it) is sent again with the SAME key until it gets one, as the guide's
    careful client would; every answer is recorded in :attr:`outcomes`."""

    def __init__(self, base_url: str, rate: float = 25.0, retry_unanswered: bool = False) -> None:
        self.url = base_url + RECEIVE
        self.rate = rate
        self.retry_unanswered = retry_unanswered
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _post(self, key: str, n: int) -> Outcome:
        body = {
            "event": "ticket.create",
            "data": {
                "subject": f"Reliability {n}",
                "message": "Load test ticket.",
                "customer_email": f"load{n}@example.com",
            },
        }
        try:
            response = requests.post(self.url, json=body, headers={"Idempotency-Key": key}, timeout=15)
        except requests.RequestException as exc:
            return Outcome(key, 0, error=type(exc).__name__, at=time.time())
        ticket = None
        try:
            doc = response.json()
            ticket = (doc.get("ticket") or {}).get("id") if isinstance(doc, dict) else None
        except ValueError:
            doc = None
        return Outcome(
            key,
            response.status_code,
            ticket,
            error=None if response.ok else response.text[:300],
            retry_after=response.headers.get("Retry-After"),
            at=time.time(),
        )

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            key = f"load-{uuid.uuid4().hex}"
            outcome = self._post(key, n)
            self.outcomes.append(outcome)
            while self.retry_unanswered and outcome.status == 0 and not self._stop.is_set():
                time.sleep(0.2)
                outcome = self._post(key, n)
                self.outcomes.append(outcome)
            self._stop.wait(1.0 / self.rate)

    def acknowledged(self) -> dict[str, str]:
        """Idempotency key -> ticket id, for every 201 (and every 200 replay)."""
        return {o.key: o.ticket_id for o in self.outcomes if o.status in (200, 201) and o.ticket_id}

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts
