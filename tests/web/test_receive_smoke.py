import hashlib
import hmac
import json


def test_guide_curl_example_creates_ticket(make_client):
    client = make_client()
    body = {"event": "ticket.create", "data": {"subject": "Test Ticket", "message": "This is a test",
                                               "customer_email": "test@example.com"}}
    response = client.post("/api/webhooks/receive", json=body)
    assert response.status_code == 201, response.get_json()
    ticket = response.get_json()["ticket"]
    assert ticket["ticket_number"].startswith("TKT-")
    assert ticket["ticket_number"].endswith("-001")
    assert ticket["status"] == "new" and ticket["priority"] == "medium"


def test_signed_request_with_secret(make_client):
    client = make_client({"gateway": {"secret": "s3cret"}})
    raw = json.dumps({"event": "ticket.create", "data": {"subject": "A", "message": "B",
                                                          "customer_email": "a@example.com"}}).encode()
    sig = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    ok = client.post("/api/webhooks/receive", data=raw, headers={"Content-Type": "application/json",
                                                                 "X-Webhook-Signature": sig})
    assert ok.status_code == 201
    bad = client.post("/api/webhooks/receive", data=raw, headers={"Content-Type": "application/json",
                                                                  "X-Webhook-Signature": "0" * 64})
    assert bad.status_code == 401 and bad.get_json()["error"] == "signature_invalid"
