"""``python -m bench.costs``: the receive path's CPU budget, part by part.

Each part of a ticket create runs many times in this process and is timed with the
thread's own CPU clock, so waiting (on Redis, for a busy CPU) does not count: steadier than
rates on a shared machine, though not immune (another process on the same physical core
slows every instruction; repeated runs here vary by about ±20%). The whole request is timed the same way, as a
WSGI call of the gateway's app and of the hello-world app (the same environ), so the parts
can be set against the whole and against the baseline. Redis's own time per publish comes
from ``INFO commandstats``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

from bench.deliver import sink_table
from bench.receive import TICKET
from bench.stack import SECRET, Stack
from gateway.publish.publisher import publish
from gateway.signing import hex_signature


def cpu_us(action: Callable[[], Any], count: int, batches: int = 10) -> float:
    """Thread CPU time of one ``action()`` in microseconds: the median over ``batches``
    batches of the batch mean (a burst of contention from other processes spoils a batch,
    not the figure)."""
    for _ in range(min(100, count)):
        action()
    size = max(1, count // batches)
    means = []
    for _ in range(batches):
        started = time.thread_time_ns()
        for _ in range(size):
            action()
        means.append((time.thread_time_ns() - started) / size / 1000)
    return statistics.median(means)


def wsgi_call(app: Any, body: bytes, headers: dict[str, str]) -> Callable[[], Any]:
    """One POST of ``body`` through ``app`` as gunicorn would call it (a fresh environ)."""

    def start_response(status: str, response_headers: list[Any], exc_info: Any = None) -> None:
        call.status = status  # type: ignore[attr-defined]

    def call() -> None:
        environ = EnvironBuilder(
            path="/api/webhooks/receive", method="POST", data=body, headers=headers
        ).get_environ()
        for _ in app(environ, start_response):
            pass

    return call


def measure(count: int, stack: Stack | None = None) -> dict[str, float]:
    """CPU µs per request of the whole receive, of hello, and of each part of receive, on
    ``stack``'s Redis (flushed first), or on a Redis of its own."""
    from bench.hello import app as hello_app
    from gateway import logs
    from gateway.events import Event, iso_z, utc_now
    from gateway.web import receive as view
    from gateway.web.app import create_app

    body = json.dumps(TICKET, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": hex_signature(body, SECRET)}
    out: dict[str, float] = {}
    with contextlib.ExitStack() as cleanup:
        if stack is None:
            tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gateway-costs-"))
            stack = cleanup.enter_context(Stack(Path(tmp)))
        stack.flush()
        # Nothing is delivered here (no worker runs): the sink only gives the config a URL.
        sink = stack.start_sink("costs")
        config = stack.write_config("costs", [sink_table("fast", sink)])
        # As `gateway web` runs it: the access log on, to a stream nobody reads.
        logs.configure("text", "INFO", stream=io.StringIO())
        app = create_app(config_path=config)
        runtime = app.extensions["gateway"]
        out["hello: whole request (WSGI)"] = cpu_us(wsgi_call(hello_app, body, headers), count)
        assert stack.redis is not None
        stack.redis.config_resetstat()
        whole = wsgi_call(app, body, headers)
        out["receive: whole request (WSGI)"] = cpu_us(whole, count)
        stats = stack.redis.info("commandstats").get("cmdstat_evalsha", {})
        parsed = json.loads(body)
        out["  signature check (HMAC)"] = cpu_us(
            lambda: view.verify_request_signature(body, headers, [SECRET], 300), count
        )
        out["  json.loads"] = cpu_us(lambda: json.loads(body), count)
        out["  marshmallow: envelope + data"] = cpu_us(
            lambda: view.TICKET_DATA.load(view.RECEIVE_BODY.load(parsed)["data"]), count
        )

        def build() -> tuple[dict[str, Any], Event]:
            now = utc_now()
            ticket = {
                "id": str(uuid.uuid4()),
                "ticket_number": "x",
                **parsed["data"],
                "status": "new",
                "category": None,
                "source": "webhook",
                "created_at": iso_z(now),
            }
            return ticket, Event.new("ticket.created", {"ticket": ticket}, at=now)

        out["  ticket + event objects"] = cpu_us(build, count)

        def publish_one() -> None:
            ticket, event = build()
            publish(runtime, event, ticket=ticket)

        out["  publish (Python side, incl. the objects)"] = cpu_us(publish_one, count)
        out["  access log line"] = cpu_us(
            lambda: logs.access_log.info(
                "%s %s %s %sms",
                "POST",
                "/api/webhooks/receive",
                201,
                1.0,
                extra={
                    "method": "POST",
                    "path": "/api/webhooks/receive",
                    "status": 201,
                    "duration_ms": 1.0,
                    "remote_addr": "127.0.0.1",
                },
            ),
            count,
        )
        if stats:
            out["redis: publish.lua per call (Redis time)"] = float(stats["usec_per_call"])
        logs.reset()
        stack.stop(sink.proc)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    for name, value in measure(args.count).items():
        print(f"{value:9.1f} µs  {name}")


if __name__ == "__main__":
    main()
