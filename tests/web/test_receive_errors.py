"""Every error ``POST /api/webhooks/receive`` can answer, as a client sees it: the status,
a stable ``error`` code, a message, per-field messages, and nothing stored."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import io
import json
import time
from typing import Any

import pytest
from werkzeug.exceptions import BadRequest

URL = "/api/webhooks/receive"
SECRET = "guide-secret"
GOOD = {"event": "ticket.create", "data": {"subject": "Support Request", "message": "Customer message here",
                                           "customer_email": "customer@example.com",
                                           "customer_name": "John Doe", "priority": "medium",
                                           "category": "Technical"}}


def nothing_stored(redis_client: Any) -> bool:
    # The one key a refused request may leave: the count of wrong signatures from its address.
    return not [key for key in redis_client.keys("gw:*") if not key.startswith(b"gw:sigfail:")]


def post_raw(client: Any, body: bytes, content_type: str = "application/json", **headers: str) -> Any:
    return client.post(URL, data=body, headers={"Content-Type": content_type, **headers})


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    doc = response.get_json()
    assert doc["error"] == code
    assert isinstance(doc["message"], str) and doc["message"]
    return doc


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client()


@pytest.fixture
def signed_client(make_client: Any) -> Any:
    return make_client({"gateway": {"secret": SECRET}})


# -- 400 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"{", b'{"event": "ticket.create", "data": {}', b"not json", b"",
                                  b'{"a": 1} trailing', b"\xff\xfe{}"])
def test_malformed_json_is_400(client: Any, redis_client: Any, body: bytes) -> None:
    assert_error(post_raw(client, body), 400, "malformed_json")
    assert nothing_stored(redis_client)


def test_a_gzip_body_is_never_inflated_but_refused_as_400(client: Any, redis_client: Any) -> None:
    # The signature covers the bytes sent, and inflating would let 1 KiB expand to 1 GiB
    # past max_body_bytes: a compressed body is refused as what it is, not JSON.
    bomb = gzip.compress(b"{" + b" " * 10_000_000 + b"}")
    assert len(bomb) < 20_000
    response = post_raw(client, bomb, **{"Content-Encoding": "gzip"})
    assert_error(response, 400, "malformed_json")
    assert nothing_stored(redis_client)



def test_a_body_cut_short_by_a_client_gone_mid_body_is_400_with_werkzeugs_explanation(
        client: Any, redis_client: Any) -> None:
    # The client said 500 bytes and went away after 20: the WSGI input ends early.
    response = client.post(URL, input_stream=io.BytesIO(b'{"event": "ticket.cr'), content_type="application/json",
                           environ_overrides={"CONTENT_LENGTH": "500"})
    doc = assert_error(response, 400, "bad_request")
    assert doc["message"] == BadRequest.description  # what went wrong, not just "Bad Request"
    assert nothing_stored(redis_client)

@pytest.mark.parametrize("body", [b"[]", b'"ticket.create"', b"42", b"null", b"[{\"event\": \"ticket.create\"}]"])
def test_json_that_is_not_an_object_is_400(client: Any, redis_client: Any, body: bytes) -> None:
    doc = assert_error(post_raw(client, body), 400, "malformed_json")
    assert "object" in doc["message"]
    assert nothing_stored(redis_client)


@pytest.mark.parametrize("event", ["ticket.created", "ticket.delete", "TICKET.CREATE", ""])
def test_unknown_event_name_is_400(client: Any, redis_client: Any, event: str) -> None:
    doc = assert_error(client.post(URL, json={**GOOD, "event": event}), 400, "unknown_event")
    assert doc["fields"] == {"event": ["Unknown event."]}
    assert "ticket.create" in doc["message"]
    assert nothing_stored(redis_client)


def test_an_unknown_event_name_is_named_whole_up_to_its_100_characters(client: Any) -> None:
    longest = "x" * 99 + "y"  # the envelope allows 100 characters
    doc = assert_error(client.post(URL, json={**GOOD, "event": longest}), 400, "unknown_event")
    assert doc["message"].startswith(f"Unknown event '{longest}'; ")
    too_long = assert_error(client.post(URL, json={**GOOD, "event": longest + "z"}), 422, "validation_failed")
    assert list(too_long["fields"]) == ["event"]


# -- 401 ----------------------------------------------------------------------------------------

def test_missing_signature_is_401_when_a_secret_is_configured(signed_client: Any, redis_client: Any) -> None:
    doc = assert_error(signed_client.post(URL, json=GOOD), 401, "signature_missing")
    assert "X-Webhook-Signature" in doc["message"]
    assert nothing_stored(redis_client)


@pytest.mark.parametrize("signature", ["0" * 64, "not-hex", "", "sha256=" + "a" * 64])
def test_wrong_hex_signature_is_401(signed_client: Any, redis_client: Any, signature: str) -> None:
    raw = json.dumps(GOOD).encode()
    response = post_raw(signed_client, raw, **{"X-Webhook-Signature": signature})
    assert_error(response, 401, "signature_invalid")
    assert nothing_stored(redis_client)


def test_signature_over_other_bytes_is_401(signed_client: Any, redis_client: Any) -> None:
    # The same JSON re-serialised (different whitespace) is different bytes: the signature
    # must be computed over exactly what is sent.
    signed = json.dumps(GOOD).encode()
    sent = json.dumps(GOOD, indent=2).encode()
    signature = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert_error(post_raw(signed_client, sent, **{"X-Webhook-Signature": signature}), 401, "signature_invalid")
    assert nothing_stored(redis_client)


def test_signature_with_the_wrong_secret_is_401(signed_client: Any, redis_client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    signature = hmac.new(b"another-secret", raw, hashlib.sha256).hexdigest()
    assert_error(post_raw(signed_client, raw, **{"X-Webhook-Signature": signature}), 401, "signature_invalid")


def test_hex_signature_with_sha256_prefix_and_upper_case_is_accepted(signed_client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert post_raw(signed_client, raw, **{"X-Webhook-Signature": "sha256=" + signature}).status_code == 201
    assert post_raw(signed_client, raw, **{"X-Webhook-Signature": signature.upper()}).status_code == 201


def standard_headers(raw: bytes, secret: str, msg_id: str = "msg_1", timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def test_standard_webhooks_signature_is_accepted(signed_client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    assert post_raw(signed_client, raw, **standard_headers(raw, SECRET)).status_code == 201


def test_standard_webhooks_wrong_signature_is_401(signed_client: Any, redis_client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    assert_error(post_raw(signed_client, raw, **standard_headers(raw, "wrong-secret")), 401, "signature_invalid")
    assert nothing_stored(redis_client)


# Whole seconds on both clocks: a second boundary crossed in flight turns +301 into 300 (the
# exact ±300 edge is pinned with a fixed clock in tests/test_signing.py).
@pytest.mark.parametrize("skew", [-310, 310, -3600])
def test_standard_webhooks_timestamp_out_of_tolerance_is_401(signed_client: Any, redis_client: Any,
                                                             skew: int) -> None:
    raw = json.dumps(GOOD).encode()
    headers = standard_headers(raw, SECRET, timestamp=int(time.time()) + skew)
    doc = assert_error(post_raw(signed_client, raw, **headers), 401, "timestamp_out_of_tolerance")
    assert "300" in doc["message"]
    assert nothing_stored(redis_client)


def test_standard_webhooks_missing_id_is_401(signed_client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    headers = standard_headers(raw, SECRET)
    del headers["webhook-id"]
    assert_error(post_raw(signed_client, raw, **headers), 401, "signature_missing")


def test_signature_is_checked_before_json_parsing(signed_client: Any) -> None:
    # An unsigned caller learns nothing about the body's validity.
    assert_error(post_raw(signed_client, b"{"), 401, "signature_missing")


# -- 413 ----------------------------------------------------------------------------------------

def test_body_over_max_body_bytes_is_413(make_client: Any, redis_client: Any) -> None:
    client = make_client({"gateway": {"max_body_bytes": 2048}})
    body = dict(GOOD, data=dict(GOOD["data"], message="x" * 3000))
    doc = assert_error(client.post(URL, json=body), 413, "payload_too_large")
    assert "2048" in doc["message"]
    assert nothing_stored(redis_client)
    # Just under the limit is fine.
    small = dict(GOOD, data=dict(GOOD["data"], message="x" * 1500))
    assert client.post(URL, json=small).status_code == 201


# (413 for a chunked body without Content-Length is in test_gunicorn.py: it needs a real server.)

# -- 415 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "text/json"])
def test_body_that_is_not_json_is_415(client: Any, redis_client: Any, content_type: str) -> None:
    assert_error(post_raw(client, json.dumps(GOOD).encode(), content_type=content_type), 415,
                 "unsupported_media_type")
    assert nothing_stored(redis_client)


def test_json_with_charset_and_vendor_types_is_accepted(client: Any) -> None:
    raw = json.dumps(GOOD).encode()
    assert post_raw(client, raw, content_type="application/json; charset=utf-8").status_code == 201
    assert post_raw(client, raw, content_type="application/vnd.tickets+json").status_code == 201


# -- 422 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"customer_email": "not-an-email"}, "data.customer_email"),
    ({"priority": "critical"}, "data.priority"),
    ({"subject": None}, "data.subject"),
    ({"subject": ""}, "data.subject"),
    ({"subject": "x" * 201}, "data.subject"),
    ({"message": 42}, "data.message"),
    ({"unknown_key": "x"}, "data.unknown_key"),
])
def test_schema_errors_are_422_per_field(client: Any, redis_client: Any, change: dict[str, Any],
                                         field: str) -> None:
    data = dict(GOOD["data"], **change)
    doc = assert_error(client.post(URL, json={"event": "ticket.create", "data": data}), 422, "validation_failed")
    assert list(doc["fields"]) == [field]
    assert all(isinstance(m, str) and m for m in doc["fields"][field])
    assert nothing_stored(redis_client)


@pytest.mark.parametrize(("change", "field"), [
    ({"subject": "Invoice\u0000 paid"}, "data.subject"),
    ({"message": "cut here:\u0000 hidden rest"}, "data.message"),
    ({"customer_name": "Ann\u0000"}, "data.customer_name"),
    ({"category": "\u0000"}, "data.category"),
])
def test_nul_in_ticket_text_is_422_with_its_field(client: Any, redis_client: Any, change: dict[str, Any],
                                                   field: str) -> None:
    # Issue 13: NUL was stored, and cuts the text short in C-string consumers downstream.
    data = json.dumps(GOOD["data"])[:-1] + ", " + json.dumps(change)[1:]
    body = '{"event": "ticket.create", "data": ' + data + "}"
    assert "\\u0000" in body
    response = client.post(URL, data=body, content_type="application/json")
    doc = assert_error(response, 422, "validation_failed")
    assert doc["fields"] == {field: ["NUL characters (\\u0000) are not allowed."]}
    assert nothing_stored(redis_client)


@pytest.mark.parametrize(("literal", "field"), [
    ('{"event": "ticket.create", "data": {"subject": NaN}}', "data.subject"),
    ('{"event": "ticket.create", "data": {"x": [1, Infinity]}}', "data.x[1]"),
    ('{"event": "ticket.create", "data": {"n": -Infinity}}', "data.n"),
    ('{"event": "ticket.create", "data": {"n": 1e999}}', "data.n"),
    ('{"event": "ticket.create", "data": {"n": -1e999}}', "data.n"),
])
def test_nan_and_infinity_are_422_with_their_field(client: Any, redis_client: Any, literal: str,
                                                   field: str) -> None:
    # Issue 13: Python's json reads these; passed on, every consumer got invalid JSON.
    doc = assert_error(client.post(URL, data=literal, content_type="application/json"), 422, "validation_failed")
    assert list(doc["fields"]) == [field]
    assert nothing_stored(redis_client)


@pytest.mark.parametrize("escape", ["\\ud800", "\\uDFFF", "x\\udc00y"])
def test_a_lone_surrogate_escape_is_400_not_stored(client: Any, redis_client: Any, escape: str) -> None:
    # Not a character: stored, it could not be encoded for Redis or for a sink later.
    body = ('{"event": "ticket.create", "data": {"subject": "' + escape + '", "message": "m", '
            '"customer_email": "a@example.com"}}').encode()
    doc = assert_error(post_raw(client, body), 400, "malformed_json")
    assert "unpaired UTF-16 surrogate" in doc["message"]
    assert nothing_stored(redis_client)


def test_a_paired_surrogate_escape_is_the_character_it_spells(client: Any) -> None:
    body = (b'{"event": "ticket.create", "data": {"subject": "\\ud83d\\ude00", "message": "m", '
            b'"customer_email": "a@example.com"}}')
    response = post_raw(client, body)
    assert response.status_code == 201 and response.get_json()["ticket"]["subject"] == "\U0001f600"


def test_missing_subject_and_bad_email_are_reported_together(client: Any) -> None:
    data = {k: v for k, v in GOOD["data"].items() if k != "subject"} | {"customer_email": "nope"}
    doc = assert_error(client.post(URL, json={"event": "ticket.create", "data": data}), 422, "validation_failed")
    assert doc["fields"] == {"data.subject": ["Missing data for required field."],
                             "data.customer_email": ["Not a valid email address."]}


def test_unknown_top_level_key_and_missing_data_are_422(client: Any) -> None:
    doc = assert_error(client.post(URL, json={**GOOD, "extra": 1}), 422, "validation_failed")
    assert doc["fields"] == {"extra": ["Unknown field."]}
    doc = assert_error(client.post(URL, json={"event": "ticket.create"}), 422, "validation_failed")
    assert doc["fields"] == {"data": ["Missing data for required field."]}


def test_every_priority_the_guide_names_is_accepted(client: Any) -> None:
    for priority in ("low", "medium", "high", "urgent"):
        response = client.post(URL, json={**GOOD, "data": dict(GOOD["data"], priority=priority)})
        assert response.status_code == 201
        assert response.get_json()["ticket"]["priority"] == priority


# -- 405 / 404 stay JSON -------------------------------------------------------------------------

def test_wrong_method_and_path_are_json_errors(client: Any) -> None:
    assert_error(client.get(URL), 405, "method_not_allowed")
    assert_error(client.post("/api/webhooks/recieve", json=GOOD), 404, "not_found")
