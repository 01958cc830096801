"""The plain rq recipe's job, in a module of its own: rq's forking worker imports it in
every work horse, so it imports no more than such a recipe would (requests, hmac)."""

from __future__ import annotations

import hashlib
import hmac

import requests


def deliver(url: str, body: str, secret: str, delivery_id: str) -> int:
    """Sign and POST one delivery; raise on a non-2xx so rq records a failure."""
    data = body.encode()
    signature = hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    response = requests.post(
        url,
        data=data,
        timeout=10,
        headers={
            "Content-Type": "application/json",
            "X-Webhook-Signature": signature,
            "X-Webhook-Delivery": delivery_id,
        },
    )
    response.raise_for_status()
    return response.status_code
