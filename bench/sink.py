"""The bench's HTTP sink: a small asyncio HTTP/1.1 keep-alive server that records arrivals.

Run as its own process (``python -m bench.sink [--delay S] [--hang]``); it prints
``PORT <n>`` once it listens. Every POST is answered ``200 ok`` (after ``--delay`` seconds,
or never with ``--hang``) and recorded:

* deliveries are counted once per ``X-Webhook-Delivery`` id (at-least-once delivery may
  repeat one), with the first and last arrival time;
* a body whose ticket subject is ``bench <epoch microseconds>`` (what the bench's senders
  put there) gives a receive->delivered latency: arrival minus that send time, on the same
  machine clock;
* a body with a ticket id and an event timestamp older than one already received for that
  ticket counts as an order violation (``order_violations``: the ordered delivery check).

``GET /_stats`` answers the record as JSON, ``GET /_count`` just the counts (cheap to
poll); ``POST /_reset`` clears it. A raw protocol
instead of a framework because the sink must not be the bottleneck: its capacity is
measured in the same run (wrk straight at it) and reported next to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

SENT_MARK = re.compile(rb'"subject":"bench (\d+)"')
# The envelope's own timestamp comes before its data; a ticket's id is its first field.
EVENT_TIME = re.compile(rb'"timestamp":"([^"]+)"')
TICKET_ID = re.compile(rb'"ticket":\{"id":"([^"]+)"')
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
MAX_HEAD = 64 * 1024


class Record:
    """What the sink has seen since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.ids: set[bytes] = set()
        self.duplicates = 0
        self.first: float | None = None
        self.last: float | None = None
        self.latencies_ms: list[float] = []
        self.latest: dict[bytes, bytes] = {}
        self.order_violations = 0

    def add(self, delivery_id: bytes | None, body: bytes) -> None:
        now_us = time.time_ns() // 1000
        self.requests += 1
        if delivery_id is not None:
            if delivery_id in self.ids:
                self.duplicates += 1
                return
            self.ids.add(delivery_id)
        now = now_us / 1e6
        if self.first is None:
            self.first = now
        self.last = now
        match = SENT_MARK.search(body)
        if match:
            self.latencies_ms.append((now_us - int(match.group(1))) / 1000.0)
        self._check_order(body)

    def _check_order(self, body: bytes) -> None:
        """An event older than one of its ticket's already received is out of order."""
        ticket = TICKET_ID.search(body)
        stamp = EVENT_TIME.search(body)
        if ticket is None or stamp is None:
            return
        key, when = ticket.group(1), stamp.group(1)
        latest = self.latest.get(key)
        if latest is not None and when < latest:
            self.order_violations += 1
        else:
            self.latest[key] = when

    @property
    def deliveries(self) -> int:
        """Distinct deliveries (requests without a delivery id count one each)."""
        return len(self.ids) if self.ids else self.requests - self.duplicates

    def counts(self) -> dict[str, Any]:
        """The counts and the first and last arrival (epoch s): cheap to poll."""
        return {
            "requests": self.requests,
            "deliveries": self.deliveries,
            "first": self.first,
            "last": self.last,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything, each latency included."""
        return {**self.counts(), "duplicates": self.duplicates, "order_violations": self.order_violations,
                "latencies_ms": self.latencies_ms}


class SinkProtocol(asyncio.Protocol):
    """One connection: parse pipelined requests out of the byte stream, answer in order."""

    def __init__(self, record: Record, delay: float, hang: bool) -> None:
        self.record = record
        self.delay = delay
        self.hang = hang
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        # Answers must leave in request order even when delayed: chain them.
        self.previous: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD and self.transport is not None:
                    self.transport.close()
                return
            head = self.buffer[:end]
            lines = head.split(b"\r\n")
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0]
            length = 0
            close = False
            delivery_id = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
                elif name == b"x-webhook-delivery":
                    delivery_id = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.handle(method, path, delivery_id, body, close)

    def handle(self, method: bytes, path: bytes, delivery_id: bytes | None, body: bytes, close: bool) -> None:
        assert self.transport is not None
        control = {b"/_stats": self.record.to_json, b"/_count": self.record.counts}.get(path)
        if control is not None:
            self.answer_json(control())
            return
        if path == b"/_reset":
            self.record.reset()
            self.transport.write(OK_CLOSE)
            self.transport.close()
            return
        if method == b"POST":
            self.record.add(delivery_id, body)
        if self.hang:
            return  # never answer: the connection stays open until the client gives up
        answer = OK_CLOSE if close else OK
        if self.previous is not None and self.previous.done():
            self.previous = None
        if self.delay <= 0 and self.previous is None:
            self.transport.write(answer)
            if close:
                self.transport.close()
            return
        self.previous = asyncio.ensure_future(self.answer_later(self.previous, answer, close))

    def answer_json(self, doc: dict[str, Any]) -> None:
        assert self.transport is not None
        payload = json.dumps(doc).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(payload), payload)
        )
        self.transport.close()

    async def answer_later(self, previous: asyncio.Future[None] | None, answer: bytes, close: bool) -> None:
        await asyncio.sleep(self.delay)
        if previous is not None:
            await previous
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            if close:
                self.transport.close()


async def serve(host: str, port: int, delay: float, hang: bool) -> None:
    record = Record()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(record, delay, hang), host, port, backlog=4096)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--hang", action="store_true", help="never answer")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.host, args.port, args.delay, args.hang))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
