"""The Webhooks Guide's own code, run unchanged against the gateway.

* Its Node.js "Signature Verification" example (tests/js/guide_incoming_signed_request.js,
  verbatim) sends a signed ticket to a gunicorn-served gateway and gets a ticket back.
* Its Python ``verify_signature`` accepts the signatures we compute (``gateway sign``,
  :func:`gateway.signing.hex_signature`).
* Its curl example creates a ticket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support.servers import GUIDE_CURL_BODY, ServedGateway, served_gateway

from gateway.signing import hex_signature

JS = Path(__file__).parent / "js"
SECRET = "whsec-guide-example-secret"
GUIDE = Path(__file__).resolve().parents[2] / "shared" / "seed" / "webhooks-guide.md"


# ---- verbatim from the guide ("Verifying Signatures", Python) ----
def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload.encode(),
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)
# ---- end of the guide's code ----


@pytest.fixture(scope="module")
def signed_gateway(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServedGateway]:
    with served_gateway(tmp_path_factory.mktemp("guide"), redis_url, {"gateway": {"secret": SECRET}}) as served:
        yield served


def run_guide_node_example(url: str, secret: str, webhook_data: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, str(JS / "guide_incoming_runner.js"), url, secret, json.dumps(webhook_data)],
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    answer = json.loads(result.stdout)
    return {"status": answer["status"], "body": json.loads(answer["body"])}


def test_the_node_example_file_is_the_guides_code_verbatim() -> None:
    if not GUIDE.exists():
        pytest.skip("the guide is not next to this checkout")
    text = GUIDE.read_text()
    example = (JS / "guide_incoming_signed_request.js").read_text()
    assert "```javascript\n" + example + "```" in text


def test_guide_node_example_creates_a_ticket(signed_gateway: ServedGateway, redis_client: Any) -> None:
    webhook_data = {"event": "ticket.create", "data": {
        "subject": "Support Request", "message": "Customer message here",
        "customer_email": "customer@example.com", "customer_name": "John Doe",
        "priority": "medium", "category": "Technical"}}
    answer = run_guide_node_example(signed_gateway.url, SECRET, webhook_data)
    assert answer["status"] == 201, answer
    ticket = answer["body"]["ticket"]
    assert ticket["ticket_number"].startswith("TKT-") and ticket["status"] == "new"
    assert {k: ticket[k] for k in webhook_data["data"]} == webhook_data["data"]
    assert ticket["source"] == "webhook"


def test_guide_node_example_with_non_ascii_text(signed_gateway: ServedGateway, redis_client: Any) -> None:
    # JSON.stringify keeps "é" and emoji as UTF-8; the signature must cover those bytes.
    data = {"event": "ticket.create", "data": {"subject": "Facture refusée 🙁", "message": "Grüße, 東京",
                                               "customer_email": "josé@example.com", "customer_name": "José"}}
    answer = run_guide_node_example(signed_gateway.url, SECRET, data)
    assert answer["status"] == 201, answer
    assert answer["body"]["ticket"]["subject"] == "Facture refusée 🙁"


def test_guide_node_example_with_the_wrong_secret_is_refused(signed_gateway: ServedGateway,
                                                             redis_client: Any) -> None:
    answer = run_guide_node_example(signed_gateway.url, "not-the-secret", {"event": "ticket.create", "data": {
        "subject": "s", "message": "m", "customer_email": "c@example.com"}})
    assert answer["status"] == 401
    assert answer["body"]["error"] == "signature_invalid"
    assert redis_client.zcard("gw:tickets") == 0


def test_guide_python_verifier_accepts_our_signatures(tmp_path: Path) -> None:
    payload = json.dumps({"event": "ticket.created", "timestamp": "2024-01-15T10:30:00Z",
                          "data": {"ticket": {"subject": "Ünïcode ✓"}}}, ensure_ascii=False)
    body = payload.encode()
    ours = hex_signature(body, SECRET)
    assert verify_signature(payload, ours, SECRET)
    assert not verify_signature(payload, ours, SECRET + "x")
    # `gateway sign`, as the guide's "verify signature calculation" troubleshooting step.
    (tmp_path / "payload.json").write_bytes(body)
    from click.testing import CliRunner

    from gateway.cli import cli

    printed = CliRunner().invoke(cli, ["sign", "--secret", SECRET, str(tmp_path / "payload.json")]).stdout.strip()
    assert printed == ours
    assert verify_signature(payload, printed, SECRET)


def test_guide_curl_example_creates_a_ticket(tmp_path: Path, redis_url: str, redis_client: Any) -> None:
    # To a gateway without a secret, as after `make run`.
    with served_gateway(tmp_path, redis_url, web_workers=1) as served:
        response = requests.post(served.url + "/api/webhooks/receive", data=GUIDE_CURL_BODY, timeout=30,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    ticket = response.json()["ticket"]
    assert (ticket["subject"], ticket["message"], ticket["customer_email"]) == (
        "Test Ticket", "This is a test", "test@example.com")
    assert ticket["priority"] == "medium" and ticket["status"] == "new"
