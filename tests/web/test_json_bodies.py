"""The admin API's JSON bodies (gateway.web.bodies.json_object_body, shared by every
endpoint that takes one): an object is taken, anything else is a 400 that shows the
expected shape, and a body that is not JSON at all is a 415."""

from __future__ import annotations

from typing import Any

import pytest

TOKEN = "json-bodies-admin-token-0123456789-abcd"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TICKET = {"id": "t-1", "ticket_number": "TKT-2026-001", "subject": "Done", "status": "resolved",
          "customer_email": "a@example.com"}


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client({"gateway": {"admin_token": TOKEN}})


def test_a_json_object_is_taken(client: Any) -> None:
    response = client.post("/api/events", json={"event": "ticket.resolved", "data": {"ticket": TICKET}},
                           headers=AUTH)
    assert response.status_code == 202, response.get_json()


@pytest.mark.parametrize("body", [b"[]", b'["ticket.resolved"]', b'"ticket.resolved"', b"7", b"null"])
def test_json_that_is_not_an_object_is_a_400_showing_the_expected_shape(client: Any, body: bytes) -> None:
    response = client.post("/api/events", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == "malformed_json" and '{"event": "ticket.updated"' in doc["message"]


def test_a_body_that_is_not_json_is_a_415(client: Any) -> None:
    response = client.post("/api/events", data="event=ticket.resolved", headers={**AUTH, "Content-Type": "text/plain"})
    assert response.status_code == 415 and response.get_json()["error"] == "unsupported_media_type"
