"""Without a receive secret, unsigned webhooks are a try-out on the gateway's own machine:
accepted from loopback, refused (401 ``unsigned_not_allowed``) from any other address unless
``gateway.allow_unsigned = true``; once a secret is set, only signed requests get in."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

URL = "/api/webhooks/receive"
BODY = b'{"event": "ticket.create", "data": {"subject": "s", "message": "m", "customer_email": "a@example.com"}}'
REMOTE = "198.51.100.20"
TOKEN = "unsigned-tests-admin-token-0123456789"


def post(client: Any, addr: str, **headers: str) -> Any:
    return client.post(URL, data=BODY, environ_base={"REMOTE_ADDR": addr},
                       headers={"Content-Type": "application/json", **headers})


def test_without_a_secret_only_this_machine_may_post_unsigned(make_client: Any, redis_client: Any) -> None:
    # Issue 13: on a server, a forgotten secret left ticket creation open to the internet.
    client = make_client({"gateway": {"admin_token": TOKEN}})
    refused = post(client, REMOTE)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == "unsigned_not_allowed"
    assert "gateway.secret" in refused.get_json()["message"]
    assert redis_client.zcard("gw:tickets") == 0
    for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert post(client, local).status_code == 201, local
    # A refusal of an unsigned request is not a wrong guess: nothing is counted.
    assert redis_client.keys("gw:sigfail:*") == []


def test_an_address_that_is_not_an_ip_is_not_this_machine(make_client: Any, redis_client: Any) -> None:
    # A unix-socket server without a proxy header gives no address (or a path): not loopback.
    client = make_client({"gateway": {"admin_token": TOKEN}})
    for addr in ("", "unix:/run/gateway.sock", "localhost"):
        refused = post(client, addr)
        assert refused.status_code == 401 and refused.get_json()["error"] == "unsigned_not_allowed", addr
    assert redis_client.zcard("gw:tickets") == 0
    # An IPv6 loopback with a zone index is still this machine.
    assert post(client, "::1%lo").status_code == 201


def test_allow_unsigned_opens_it_on_purpose(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN, "allow_unsigned": True}})
    assert post(client, REMOTE).status_code == 201


def test_a_secret_set_through_the_api_closes_unsigned_requests_everywhere(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN, "allow_unsigned": True}})
    rotated = client.post("/api/receive-secret/rotate", headers={"Authorization": f"Bearer {TOKEN}"})
    assert rotated.status_code in (200, 201), rotated.get_json()
    secret = rotated.get_json()["secret"]
    assert post(client, "127.0.0.1").get_json()["error"] == "signature_missing"
    signature = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    assert post(client, REMOTE, **{"X-Webhook-Signature": signature}).status_code == 201
