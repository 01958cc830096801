"""A sink's static headers often carry credentials: the delivery log shows their names
but never their values, while the destination still receives them."""

import json


def test_static_header_values_are_hidden_in_the_delivery_log(make_client, recording_sink, drain_deliveries):
    sink = recording_sink.sink(name="partner", headers={"X-Partner-Key": "pk-live-credential-123"})
    client = make_client({"delivery": {"allow_private_networks": True}, "sinks": [sink],
                          "gateway": {"admin_token": "admin-token-for-tests"}})
    body = {"event": "ticket.create", "data": {"subject": "S", "message": "M", "customer_email": "c@example.com"}}
    assert client.post("/api/webhooks/receive", json=body).status_code == 201

    attempts = drain_deliveries(client.application)

    assert [a["status"] for a in attempts] == ["delivered"]
    assert recording_sink.requests[0].header("X-Partner-Key") == "pk-live-credential-123"
    shown = client.get(f"/api/deliveries/{attempts[0]['delivery_id']}",
                       headers={"Authorization": "Bearer admin-token-for-tests"})
    assert shown.status_code == 200
    assert "pk-live-credential-123" not in json.dumps(shown.get_json())
    assert shown.get_json()["delivery"]["attempt_log"][0]["request"]["headers"]["X-Partner-Key"] == "[hidden]"
