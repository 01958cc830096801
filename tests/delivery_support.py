"""Real parts for the delivery engine's tests: a recording HTTP sink server with scripted
answers, a minimal sink type, worker subprocesses, and a "wait until" helper."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from marshmallow import Schema, fields

from gateway import hookimpl, testing
from gateway.sinks import DeliveryInfo, OutgoingRequest, Sink, SinkType, Target

DEADLINE_S = 90.0  # generous: CI runs three test workers on two cores; a pass returns at once


def wait_until(predicate: Callable[[], Any], what: str = "condition", timeout: float = DEADLINE_S) -> Any:
    """:func:`gateway.testing.wait_until` with this suite's CI deadline."""
    return testing.wait_until(predicate, what, timeout)


@dataclasses.dataclass
class Answer:
    """One scripted answer; ``delay`` seconds before answering (a slow sink)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class SinkServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers from a script
    (then with ``default``)."""

    def __init__(self, default: Answer | None = None) -> None:
        self.default = default or Answer()
        self.script: collections.deque[Answer] = collections.deque()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server.lock:
                    server.received.append(Received(self.path, dict(self.headers.items()), body, time.time()))
                    answer = server.script.popleft() if server.script else server.default
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                if answer.delay:
                    time.sleep(answer.delay)
                with server.lock:
                    server.active -= 1
                try:
                    self.send_response(answer.status)
                    for key, value in answer.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def answer(self, *answers: Answer) -> SinkServer:
        self.script.extend(answers)
        return self

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class UrlOptions(Schema):
    url = fields.String(required=True)


class PlainSink(Sink):
    """The smallest real sink: POST the envelope, signed, with the delivery id."""

    def render(self, event: Any, target: Target, delivery: DeliveryInfo) -> OutgoingRequest:
        return OutgoingRequest(url=target.url, body=event.envelope_bytes(), sign=True,
                               headers={"Content-Type": "application/json", "X-Webhook-Event": event.name,
                                        "X-Webhook-Delivery": delivery.id})


class PlainSinkPlugin:
    """Registers the ``plain`` sink type (for in-process tests)."""

    __name__ = "plain_sink_plugin"

    @hookimpl
    def register_sink_types(self, register: Callable[[SinkType], None]) -> None:
        register(SinkType(name="plain", options_schema=UrlOptions, factory=PlainSink))


def publish_tickets(runtime: Any, n: int = 1) -> list[str]:
    """Publish ``n`` ticket.created events through the normal path; their delivery ids."""
    from gateway.events import Event

    ids: list[str] = []
    for i in range(n):
        ids.extend(runtime.publisher.publish(Event.new("ticket.created", {"ticket": {"id": f"t{i}"}})).delivery_ids)
    return ids


def shown(runtime: Any, delivery_id: str) -> dict[str, Any]:
    """The delivery as the API shows it (it must exist)."""
    from gateway import deliverylog

    found = deliverylog.get_delivery(runtime, delivery_id)
    assert found is not None, delivery_id
    return found


def sink_table(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "plain", "url": url, "events": ["*"], **extra}


def engine_config(redis_url: str, tmp_path: Path, sinks: list[dict[str, Any]], **delivery: Any) -> dict[str, Any]:
    return {"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"), "admin_token": "admin-token-1"},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0, **delivery},
            "sinks": sinks}


@dataclasses.dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_worker(config_path: Path, log_path: Path, *args: str, plain: bool = True) -> WorkerProcess:
    """A real worker process on ``config_path``: ``python -m gateway.worker``, or with
    ``plain`` the same worker with this module's ``plain`` sink type registered."""
    env = dict(os.environ)
    if plain:
        command = [sys.executable, str(Path(__file__).resolve()), "--config", str(config_path), *args]
    else:
        command = [sys.executable, "-m", "gateway.worker", "--config", str(config_path), *args]
    log_file = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    log_file.close()
    return WorkerProcess(process, log_path)


def workers(*procs: WorkerProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


def _main() -> None:
    """A ``gateway worker`` with the ``plain`` sink type registered (see start_worker)."""
    import argparse
    import logging

    from gateway.runtime import Runtime
    from gateway.worker import run_worker

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--burst", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runtime = Runtime.from_config(options.config, extra_plugins=[PlainSinkPlugin()])
    run_worker(runtime, options.concurrency, options.burst)


if __name__ == "__main__":
    # Re-import under its module name so the plugin's classes are importable by name.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import delivery_support

    delivery_support._main()


def drain_queued(runtime: Any, concurrency: int = 4) -> int:
    """Run, in this process, the drain jobs waiting on the rq queue (what a worker would do
    with them) until the drainers release; returns how many were run. For tests that need
    deliveries attempted but not a worker process (no retries: they need rq's scheduler)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from gateway.drainer import Drainer

    drainer = Drainer(runtime, concurrency)
    ran = 0
    try:
        while True:
            raw_id = runtime.redis.lpop(runtime.queue.key)
            if raw_id is None:
                return ran
            job_id = raw_id.decode()
            job = Job.fetch(job_id, connection=runtime.redis, serializer=JSONSerializer)
            if job.func_name == "gateway.jobs.drain":
                drainer.run_inline(*job.args)
                ran += 1
            job.delete()
    finally:
        drainer.stop()


class WakeupRunner:
    """Hands the rq drain jobs on the queue to ``drainer`` as a worker would (no sweeper,
    no scheduler), from a thread: for tests of the wake / release protocol itself."""

    def __init__(self, runtime: Any, drainer: Any) -> None:
        self.runtime = runtime
        self.drainer = drainer
        self.wakeups = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from rq.job import Job
        from rq.serializers import JSONSerializer

        while not self._stop.is_set():
            popped = self.runtime.redis.blpop([self.runtime.queue.key], timeout=0.2)
            if popped is None:
                continue
            job = Job.fetch(popped[1].decode(), connection=self.runtime.redis, serializer=JSONSerializer)
            if job.func_name == "gateway.jobs.drain":
                self.wakeups += 1
                self.drainer.start(*job.args)
            job.delete()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.drainer.stop()
