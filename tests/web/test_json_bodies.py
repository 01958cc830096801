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


# -- an optional body (gateway.web.bodies.optional_object_body): none, an object, or a 415 ------

def test_an_optional_body_may_be_left_out_or_be_a_json_object_but_not_other_media(client: Any) -> None:
    rotate = "/api/receive-secret/rotate"
    assert client.post(rotate, headers=AUTH).status_code == 200
    with_body = client.post(rotate, json={"overlap": 0}, headers=AUTH)
    assert with_body.status_code == 200 and with_body.get_json()["secret"]
    form = client.post(rotate, data="overlap=0", headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and form.get_json()["error"] == "unsupported_media_type"
    listed = client.post(rotate, json=[0], headers=AUTH)
    assert listed.status_code == 400 and '{"overlap": 3600}' in listed.get_json()["message"]
