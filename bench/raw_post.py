"""The physical limit of delivery on this machine: one process posting the same signed
envelope the generic webhook sends, in a urllib3 keep-alive loop, straight to a bench sink.

Run as a child (``python -m bench.raw_post --url URL --count N --tag T``) by
:func:`bench.growth.raw_post`, two at a time; each post carries its own
``X-Webhook-Delivery`` id (``<tag>-<n>``) so the sink counts every one. No Redis, no
claim, no attempt record: what ``deliver_rps`` is compared with (``deliver_vs_raw``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import urllib3

from bench.deliver import sample_ticket
from bench.stack import SECRET
from gateway.signing import hex_signature


def envelope() -> bytes:
    """A ``ticket.created`` envelope as the generic webhook sends it (event, id, timestamp, data)."""
    doc: dict[str, Any] = {
        "event": "ticket.created",
        "id": "evt_3b1f0c2e9a7d4c61b5e8f0a2c4d6e8f0",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "data": {"ticket": sample_ticket(0)},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def headers_for(body: bytes, delivery_id: str) -> dict[str, str]:
    """The headers of one signed post: the signature of ``body``, the event, a delivery id."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "bench-raw-post",
        "X-Webhook-Event": "ticket.created",
        "X-Webhook-Delivery": delivery_id,
        "X-Webhook-Signature": hex_signature(body, SECRET),
    }


def post_loop(url: str, count: int, tag: str) -> int:
    """``count`` posts of the envelope to ``url`` on one kept-alive connection; the number
    answered 2xx."""
    body = envelope()
    base = headers_for(body, "")
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    ok = 0
    for index in range(count):
        answer = pool.request("POST", url, body=body, headers={**base, "X-Webhook-Delivery": f"{tag}-{index}"})
        ok += 200 <= answer.status < 300
    pool.clear()
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args(argv)
    ok = post_loop(args.url, args.count, args.tag)
    return 0 if ok == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
