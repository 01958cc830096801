"""The least a durable receive can cost: ``receive_floor_rps``.

A bare WSGI callable (no framework) that reads the body and runs the gateway's own
publish.lua with arguments built once at start-up (one ticket, its event and its
delivery, re-sent every time: no signature check, no JSON, no validation, no ids, no
log line, no metrics), served by the gateway's gunicorn set-up like hello and receive.
What separates ``receive_rps`` from this is the gateway's per-request Python work; what
separates this from ``hello_rps`` is the durable write itself.

``python -m bench.floor --config C --port P [--web-workers N]`` serves it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from gateway.web.wsgi import GatewayServer

BODY = b'{"floor":true}\n'


def floor_app(config: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI callable: each POST re-runs one pre-built publish.lua call."""
    from gateway.events import Event, utc_now
    from gateway.publish.publisher import delivery_rows, publish_args
    from gateway.publish.tickets import new_ticket
    from gateway.runtime import Runtime

    runtime = Runtime.from_config(config, start_embedded=False)
    data = {"subject": "Floor", "message": "The least a receive costs.", "priority": "high",
            "category": None, "customer_email": "floor@example.com", "customer_name": "Floor"}
    now = utc_now()
    ticket = new_ticket(data, now)
    event = Event.new("ticket.created", {"ticket": ticket}, at=now)
    args = publish_args(runtime, event, delivery_rows(runtime, event), ticket, None, now)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":  # the start-up probe: nothing written
            start_response("404 NOT FOUND", [("Content-Length", "0")])
            return [b""]
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        runtime.scripts.publish(args)
        start_response("201 CREATED", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
        return [BODY]

    return app


class FloorServer(GatewayServer):
    """``gateway web``'s gunicorn set-up, serving :func:`floor_app`."""

    def load(self) -> Any:
        return floor_app(str(self.config_path))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the receive floor like `gateway web`.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args(argv)
    FloorServer(args.config, host=args.host, port=args.port, workers=args.web_workers).run()


if __name__ == "__main__":
    main()
