"""What ``POST /api/webhooks/receive`` accepts, case by case (the fuzz tests in
test_receive_fuzz.py roam the same ground at random; these pin each documented form):
the guide's hex signature with or without a ``sha256=`` prefix in either case, the JSON
media types (any case, with parameters, ``application/*+json``) and not others, several
Standard Webhooks signatures of which one matches, ``v2,`` entries ignored, and the
timestamp tolerance in both directions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

URL = "/api/webhooks/receive"
SECRET = "receive-secret"
BODY = json.dumps({"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Help",
                                                      "customer_email": "ann@example.com"}}).encode()


def hex_sig(body: bytes = BODY, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def v1(timestamp: int, msg_id: str = "msg_1", secret: str = SECRET) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + BODY
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


def post(client: Any, content_type: str = "application/json", **headers: str) -> Any:
    return client.post(URL, data=BODY, headers={"Content-Type": content_type, **headers})


def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["ticket"]


def refused(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"] == code


@pytest.fixture
def signed(make_client: Any) -> Any:
    return make_client({"gateway": {"secret": SECRET}})


@pytest.fixture
def open_client(make_client: Any) -> Any:
    return make_client()


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256="])
def test_hex_signature_with_or_without_its_prefix_creates_the_ticket(signed: Any, prefix: str) -> None:
    ticket = created(post(signed, **{"X-Webhook-Signature": prefix + hex_sig()}))
    assert ticket["subject"] == "Printer on fire"


@pytest.mark.parametrize("header", [hex_sig(secret="another-secret"), "sha256=" + hex_sig(secret="another-secret"),
                                    "sha512=" + hex_sig(), hex_sig()[:-2]])
def test_a_wrong_hex_signature_is_401(signed: Any, redis_client: Any, header: str) -> None:
    refused(post(signed, **{"X-Webhook-Signature": header}), 401, "signature_invalid")
    assert not redis_client.keys("gw:ticket:*")


@pytest.mark.parametrize("content_type", ["application/json", "APPLICATION/JSON", "Application/Json",
                                          "application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "application/vnd.api+json", "application/merge-patch+json"])
def test_json_media_types_are_accepted(open_client: Any, content_type: str) -> None:
    created(post(open_client, content_type))


@pytest.mark.parametrize("content_type", ["text/x+json", "text/json", "text/plain", "application/jsonp",
                                          "application/x-www-form-urlencoded", "json", "+json", ""])
def test_other_media_types_are_415(open_client: Any, redis_client: Any, content_type: str) -> None:
    refused(post(open_client, content_type), 415, "unsupported_media_type")
    assert not redis_client.keys("gw:ticket:*")


def test_one_matching_v1_signature_among_several_is_enough(signed: Any) -> None:
    now = int(time.time())
    signatures = f"v1,{v1(now, secret='old-secret')} v1,{v1(now)} v1,{v1(now, secret='other')}"
    created(post(signed, **{"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signatures}))


def test_v2_entries_are_ignored_even_when_their_value_matches(signed: Any, redis_client: Any) -> None:
    now = int(time.time())
    for signatures in (f"v2,{v1(now)}", f"v1,{v1(now, secret='old-secret')} v2,{v1(now)}"):
        refused(post(signed, **{"webhook-id": "msg_1", "webhook-timestamp": str(now),
                                "webhook-signature": signatures}), 401, "signature_invalid")
    assert not redis_client.keys("gw:ticket:*")


@pytest.mark.parametrize("offset", [-290, 290])
def test_a_timestamp_inside_the_tolerance_is_accepted_either_way(signed: Any, offset: int) -> None:
    at = int(time.time()) + offset
    created(post(signed, **{"webhook-id": f"msg_{offset}", "webhook-timestamp": str(at),
                            "webhook-signature": f"v1,{v1(at, f'msg_{offset}')}"}))


@pytest.mark.parametrize("offset", [-310, 310])
def test_a_timestamp_outside_the_tolerance_is_refused_either_way(signed: Any, redis_client: Any, offset: int) -> None:
    # Signed correctly: only the clock is wrong (the exact edge is pinned in tests/test_signing.py).
    at = int(time.time()) + offset
    refused(post(signed, **{"webhook-id": "msg_1", "webhook-timestamp": str(at),
                            "webhook-signature": f"v1,{v1(at)}"}), 401, "timestamp_out_of_tolerance")
    assert not redis_client.keys("gw:ticket:*")


def test_the_configured_tolerance_is_the_one_applied(make_client: Any) -> None:
    client = make_client({"gateway": {"secret": SECRET, "signature_tolerance": 30}})
    at = int(time.time()) - 60
    refused(post(client, **{"webhook-id": "msg_1", "webhook-timestamp": str(at),
                            "webhook-signature": f"v1,{v1(at)}"}), 401, "timestamp_out_of_tolerance")


ROTATING_ADMIN_TOKEN = "rotating-admin-token-0123456789-abcdef"
ROTATING_ADMIN = {"Authorization": f"Bearer {ROTATING_ADMIN_TOKEN}"}


def two_processes_after_a_rotation(make_client: Any) -> tuple[Any, Any, str]:
    """Two processes on one Redis with an API-set receive secret: ``rotating`` (which rotates
    it, with ``ROTATING_ADMIN``), ``other`` (which has received a request signed with it, so
    knows it), and that secret."""
    config = {"gateway": {"admin_token": ROTATING_ADMIN_TOKEN}}
    rotating = make_client(config)
    first = rotating.post("/api/receive-secret/rotate", headers=ROTATING_ADMIN).get_json()["secret"]
    other = make_client(config)
    created(post(other, **{"X-Webhook-Signature": hex_sig(secret=first)}))
    return rotating, other, first


def test_a_secret_rotated_a_moment_ago_by_another_process_is_accepted_at_once(make_client: Any) -> None:
    rotating, other, _ = two_processes_after_a_rotation(make_client)
    second = rotating.post("/api/receive-secret/rotate", headers=ROTATING_ADMIN).get_json()["secret"]
    # Signed with a secret the other process has not seen yet: it looks again before refusing.
    created(post(other, **{"X-Webhook-Signature": hex_sig(secret=second)}))
    refused(post(other, **{"X-Webhook-Signature": hex_sig(secret="guess")}), 401, "signature_invalid")
    refused(post(other), 401, "signature_missing")


def test_a_request_signed_with_a_secret_retired_while_this_process_still_knew_it_is_refused(
        make_client: Any, redis_client: Any) -> None:
    rotating, other, first = two_processes_after_a_rotation(make_client)
    # Rotated with no overlap (it leaked): the first secret is refused from now on.
    assert rotating.post("/api/receive-secret/rotate", headers=ROTATING_ADMIN, json={"overlap": 0}).status_code == 200
    tickets = redis_client.zcard("gw:tickets")
    # The other process still judges by the first secret: the write finds the integrations
    # changed, and the request is judged again by the secrets as they are now.
    refused(post(other, **{"X-Webhook-Signature": hex_sig(secret=first)}), 401, "signature_invalid")
    assert redis_client.zcard("gw:tickets") == tickets
