"""The "Create ticket" action: ``POST /api/zapier/tickets`` creates a ticket through the
receive endpoint's path (validation, idempotency, ticket.created to every subscriber) and
answers it flat; ``GET /api/zapier/fields/ticket`` describes the action's form."""

from __future__ import annotations

from typing import Any

import pytest

KEY = "zk_" + "t" * 29
ADMIN = "create-ticket-admin-token-0123456"
PUBLIC_URL = "https://support.example.com"
FIELDS = {"subject": "Invoice 4411 is wrong", "message": "Charged twice for March.",
          "customer_email": "jo@example.com", "customer_name": "Jo", "priority": "high", "category": "Billing"}


@pytest.fixture
def gateway_config(recording_sink: Any) -> dict[str, Any]:
    return {"gateway": {"admin_token": ADMIN, "public_url": PUBLIC_URL},
            "delivery": {"allow_private_networks": True},
            "sinks": [{"name": "zapier", "type": "zapier", "events": ["ticket.created"],
                       "api_keys": [{"label": "crm", "key": KEY}]},
                      recording_sink.sink("crm-webhook", events=["ticket.created"])]}


def create(client: Any, fields: Any, key: str = KEY, **headers: str) -> Any:
    return client.post("/api/zapier/tickets", json=fields, headers={"X-API-Key": key, **headers})


def test_a_zap_creates_a_ticket_and_gets_it_back_flat(app: Any, client: Any, recording_sink: Any,
                                                      drain_deliveries: Any) -> None:
    response = create(client, FIELDS)

    assert response.status_code == 201, response.get_json()
    ticket = response.get_json()
    assert ticket["id"] and ticket["ticket_number"].startswith("TKT-")
    assert {k: ticket[k] for k in FIELDS} == FIELDS
    assert (ticket["status"], ticket["source"]) == ("new", "zapier")
    assert ticket["ticket_url"] == f"{PUBLIC_URL}/tickets/{ticket['id']}"
    assert response.headers["Location"] == f"/api/tickets/{ticket['id']}"
    stored = client.get(response.headers["Location"], headers={"Authorization": f"Bearer {ADMIN}"})
    assert stored.get_json()["ticket"] == {k: v for k, v in ticket.items() if k != "ticket_url"}
    # The same path as the receive endpoint: ticket.created goes to every subscriber.
    assert [a["outcome"] for a in drain_deliveries(app)] == ["delivered"]
    delivered = recording_sink.requests[0].json()
    assert delivered["event"] == "ticket.created" and delivered["data"]["ticket"]["id"] == ticket["id"]


def test_optional_fields_a_zap_leaves_empty_are_not_given(client: Any) -> None:
    response = create(client, {**FIELDS, "customer_name": "", "priority": "", "category": None})

    assert response.status_code == 201, response.get_json()
    ticket = response.get_json()
    assert (ticket["customer_name"], ticket["priority"], ticket["category"]) == (None, "medium", None)


@pytest.mark.parametrize(("fields", "paths"), [
    ({**FIELDS, "subject": ""}, ["subject"]),
    ({**FIELDS, "customer_email": "not-an-address", "priority": "asap"}, ["customer_email", "priority"]),
    ({k: v for k, v in FIELDS.items() if k != "message"}, ["message"]),
    ({**FIELDS, "assignee": "sam"}, ["assignee"]),
])
def test_bad_fields_are_a_422_per_field(client: Any, redis_client: Any, fields: Any, paths: list[str]) -> None:
    response = create(client, fields)

    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_failed" and sorted(body["fields"]) == paths
    assert redis_client.zcard("gw:tickets") == 0


def test_an_idempotency_key_creates_one_ticket(client: Any, redis_client: Any) -> None:
    key = {"Idempotency-Key": "msg-<CAF123@mail.example.com>"}
    first = create(client, FIELDS, **key)
    again = create(client, dict(reversed(FIELDS.items())), **key)  # the same fields, in another order

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert redis_client.zcard("gw:tickets") == 1


def test_an_idempotency_key_reused_with_other_fields_is_refused(client: Any, redis_client: Any) -> None:
    # Issue 13: another request under a known key got the first ticket (and its customer's data).
    key = {"Idempotency-Key": "msg-<CAF124@mail.example.com>"}
    assert create(client, FIELDS, **key).status_code == 201
    reused = create(client, {**FIELDS, "subject": "edited in the meantime"}, **key)

    assert reused.status_code == 422 and reused.get_json()["error"] == "idempotency_key_reused"
    assert FIELDS["customer_email"] not in reused.text
    assert redis_client.zcard("gw:tickets") == 1


def test_a_zaps_idempotency_keys_are_its_own(client: Any) -> None:
    # The receive endpoint's clients and Zaps choose keys independently: no collision.
    key = {"Idempotency-Key": "order-77"}
    received = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": FIELDS}, headers=key)
    created = create(client, FIELDS, **key)

    assert (received.status_code, created.status_code) == (201, 201)
    assert received.get_json()["ticket"]["id"] != created.get_json()["id"]


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 401, "unauthorized"),
    ({"X-API-Key": "zk_" + "x" * 29}, 401, "unauthorized"),
])
def test_a_key_is_needed(client: Any, headers: dict[str, str], status: int, code: str) -> None:
    response = client.post("/api/zapier/tickets", json=FIELDS, headers=headers)

    assert (response.status_code, response.get_json()["error"]) == (status, code)


def test_a_sink_can_refuse_to_create_tickets(make_client: Any, redis_client: Any) -> None:
    client = make_client({"sinks": [{"name": "zapier", "type": "zapier", "events": ["*"], "api_keys": [KEY],
                                     "create_tickets": False}]})

    response = create(client, FIELDS)

    assert (response.status_code, response.get_json()["error"]) == (403, "create_tickets_disabled")
    assert client.get("/api/zapier/me", headers={"X-API-Key": KEY}).get_json()["create_tickets"] is False
    assert redis_client.zcard("gw:tickets") == 0


@pytest.mark.parametrize(("body", "status"), [(b"[1, 2]", 400), (b"{not json", 400)])
def test_a_body_that_is_not_an_object_is_a_400(client: Any, body: bytes, status: int) -> None:
    response = client.post("/api/zapier/tickets", data=body,
                           headers={"X-API-Key": KEY, "Content-Type": "application/json"})

    assert response.status_code == status and response.get_json()["error"] == "malformed_json"


def test_the_fields_describe_the_action_form_as_zapier_takes_it(client: Any) -> None:
    response = client.get("/api/zapier/fields/ticket", headers={"X-API-Key": KEY})

    assert response.status_code == 200
    fields = {f["key"]: f for f in response.get_json()}
    assert list(fields) == ["subject", "message", "customer_email", "customer_name", "priority", "category"]
    assert [k for k, f in fields.items() if f["required"]] == ["subject", "message", "customer_email"]
    assert fields["message"]["type"] == "text" and fields["subject"]["type"] == "string"
    assert fields["customer_email"]["label"] == "Customer email" and fields["subject"]["helpText"]
    assert fields["priority"]["default"] == "medium"
    assert [c["value"] for c in fields["priority"]["choices"]] == ["low", "medium", "high", "urgent"]
    assert fields["priority"]["choices"][0] == {"value": "low", "label": "Low", "sample": "low"}
    assert client.get("/api/zapier/fields/ticket").status_code == 401
