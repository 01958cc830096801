"""Real parts for the process-killing reliability tests: gateway web and worker processes
(each in its own process group, so a SIGKILL takes its children too), a Redis server the
test owns, a destination that records every request and can be taken down, and a load
generator that POSTs tickets the way a careful client would."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from gateway import testing
from served_gateway import child_env, free_port

RECEIVE = "/api/webhooks/receive"
ADMIN_TOKEN = "reliability-admin-token"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """:func:`gateway.testing.wait_until`, polling every 0.2 s: these predicates make HTTP
    requests to servers under load."""
    return testing.wait_until(predicate, what, timeout, interval=0.2)


def base_config(redis_url: str, data_dir: Path, sink_url: str, **delivery: Any) -> dict[str, Any]:
    """One generic webhook sink on ``ticket.created``, private networks allowed (the sink is
    on 127.0.0.1), short timeouts and retries so a test sees several rounds."""
    return {
        "gateway": {"redis_url": redis_url, "data_dir": str(data_dir), "admin_token": ADMIN_TOKEN},
        "delivery": {
            "allow_private_networks": True,
            "timeout": 2,
            "retry_schedule": [1, 1, 2, 2, 3, 3, 5, 5, 5, 5],
            "retry_jitter": 0.2,
            "failure_threshold": 1000,
            **delivery,
        },
        "sinks": [{"name": "rec", "type": "generic_webhook", "url": sink_url, "events": ["ticket.created"]}],
    }


# -- processes -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Proc:
    """A gateway process started by a test, leading its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole group: the process and anything it forked (rq's scheduler)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if not self.alive():
            self._reap_group()
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
        self._reap_group()

    def _reap_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.process.poll() is None:
            self.process.wait()


def _start(name: str, argv: list[str], log: Path, **env: str) -> Proc:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(**env),
            start_new_session=True,
        )
    return Proc(name, process, log)


def _gateway(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "--config", str(config), *args]


def start_worker(config: Path, log: Path, concurrency: int = 8) -> Proc:
    """``gateway worker`` as a real process."""
    return _start("worker", _gateway(config, "worker", "--concurrency", str(concurrency)), log)


def start_web(config: Path, log: Path, port: int, web_workers: int = 2) -> Proc:
    """``gateway web`` (gunicorn) as a real process; returns once it answers /healthz."""
    argv = _gateway(
        config, "web", "--host", "127.0.0.1", "--port", str(port), "--web-workers", str(web_workers)
    )
    proc = _start("web", argv, log)

    def healthy() -> bool:
        if not proc.alive():
            raise AssertionError(f"gateway web exited:\n{proc.output()}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(healthy, "gateway web to answer /healthz")
    return proc


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (read from /proc: gunicorn's forked workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


# -- the destination -----------------------------------------------------------------------------


@dataclasses.dataclass
class Arrival:
    delivery_id: str
    ticket_id: str
    at: float
    status: int


class _QuietServer(ThreadingHTTPServer):
    """Keeps track of its open connections, so that going down drops the keep-alive ones
    too (as a crashed receiver would), not only the listening socket."""

    daemon_threads = True

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        with self.connections_lock:
            connections, self.open_connections = self.open_connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a worker killed mid-request resets its connection: expected here, not news


class Destination:
    """A real HTTP receiver on a fixed 127.0.0.1 port that records every request.

    ``delay`` (a range, seconds) keeps requests in flight for a while, so that kills hit
    deliveries mid-attempt. :meth:`go_down` closes the listening socket (connections are
    refused) and :meth:`come_back` listens on the same port again. ``answers`` is a queue of
    scripted (status, headers) replies used before the default 200.
    """

    def __init__(self, delay: tuple[float, float] = (0.0, 0.0)) -> None:
        self.delay = delay
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        self._server: _QuietServer | None = None
        self.come_back()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    ticket_id = json.loads(body)["data"]["ticket"]["id"]
                except (ValueError, KeyError, TypeError):
                    ticket_id = ""
                # Recorded when the request arrives, before answering: an attempt whose
                # worker is killed while waiting for the answer still shows here.
                with owner.lock:
                    status, headers = owner.answers.pop(0) if owner.answers else (200, {})
                    owner.arrivals.append(
                        Arrival(self.headers.get("X-Webhook-Delivery", ""), ticket_id, time.time(), status)
                    )
                if owner.delay[1] > 0:
                    time.sleep(random.uniform(*owner.delay))
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def go_down(self) -> None:
        """Stop listening: from now on connections are refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.drop_connections()

    def come_back(self) -> None:
        """Listen again on the same port."""
        deadline = time.monotonic() + 30
        while True:
            try:
                server = _QuietServer(("127.0.0.1", self.port), self._handler())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def script(self, *answers: tuple[int, dict[str, str]]) -> None:
        with self.lock:
            self.answers.extend(answers)

    def snapshot(self) -> list[Arrival]:
        with self.lock:
            return list(self.arrivals)

    def delivered_tickets(self) -> set[str]:
        return {a.ticket_id for a in self.snapshot() if 200 <= a.status < 300}


# -- the load ------------------------------------------------------------------------------------


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


def engine_state(redis: Any, sink: str = "rec") -> dict[str, Any]:
    """What the delivery engine's Redis structures say about ``sink`` (for failure messages)."""
    statuses: dict[str, int] = {}
    for key in redis.scan_iter("gw:delivery:dlv_*"):
        if not key.endswith(b":attempts"):
            status = (redis.hget(key, "status") or b"?").decode()
            statuses[status] = statuses.get(status, 0) + 1
    return {
        "deliveries": statuses,
        "ready": redis.llen(f"gw:ready:{sink}"),
        "inflight": redis.zrange(f"gw:inflight:{sink}", 0, -1, withscores=True)[:5],
        "drainers": redis.zrange(f"gw:drainers:{sink}", 0, -1, withscores=True),
        "sink_state": redis.hgetall(f"gw:sink:{sink}:state"),
        "rq_queue": redis.llen("rq:queue:gateway"),
        "rq_workers": sorted(k.decode() for k in redis.smembers("rq:workers")),
        "now_ms": int(time.time() * 1000),
    }


def delivery_statuses(redis: Any) -> list[bytes]:
    """The status of every delivery in the delivery log."""
    keys = [k for k in redis.scan_iter("gw:delivery:dlv_*") if not k.endswith(b":attempts")]
    return [redis.hget(key, "status") for key in keys]


def wait_until_logged_delivered(redis: Any, count: int, timeout: float = 120.0) -> None:
    """Wait until the delivery log holds ``count`` deliveries, all ``delivered``. A receiver
    sees a request before the worker records its answer (and a killed worker's attempt is
    recorded only once it is made again), so this comes after the receiver's view."""
    wait_until(
        lambda: sorted(set(delivery_statuses(redis))) == [b"delivered"],
        "every delivery logged as delivered",
        timeout=timeout,
    )
    assert len(delivery_statuses(redis)) == count
