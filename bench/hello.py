"""The baseline web app: a Flask hello-world POST endpoint, served exactly as the gateway
is (the gateway's own gunicorn application class, same options), so ``receive_ratio``
says what the gateway's own work costs.

``python -m bench.hello --port P [--web-workers N]`` serves it.
"""

from __future__ import annotations

import argparse
from typing import Any

from flask import Flask, jsonify

from gateway.web.wsgi import GatewayServer

app = Flask("hello")


@app.post("/api/webhooks/receive")
def hello() -> tuple[Any, int]:
    return jsonify({"hello": "world"}), 201


class HelloServer(GatewayServer):
    """``gateway web``'s gunicorn set-up, serving the hello-world app instead."""

    def load(self) -> Any:
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the hello-world baseline like `gateway web`.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args(argv)
    HelloServer(None, host=args.host, port=args.port, workers=args.web_workers).run()


if __name__ == "__main__":
    main()
