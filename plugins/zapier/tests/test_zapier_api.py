"""Zapier's REST Hooks API: subscribe, list, unsubscribe, sample data, and who may do it."""

import pytest

from gateway import DeliveryInfo, Event, OutcomeKind, Response

KEY = "zk_" + "a" * 29
OTHER_KEY = "zk_" + "b" * 29
ADMIN = "admin-token-123-0123456789abcdef"


def zapier_config(*extra_sinks, events=("ticket.created", "ticket.resolved")):
    sink = {"name": "zapier", "type": "zapier", "events": list(events), "api_keys": [KEY]}
    return {"gateway": {"admin_token": ADMIN, "public_url": "https://support.example.com"},
            "sinks": [sink, *extra_sinks]}


@pytest.fixture
def client(make_client):
    return make_client(zapier_config())


def auth(key=KEY):
    return {"X-API-Key": key}


def subscribe(client, event="ticket.created", url="https://hooks.zapier.com/hooks/standard/1/abc/", key=KEY,
              **extra):
    return client.post("/api/zapier/hooks", json={"target_url": url, "event": event, **extra}, headers=auth(key))


def test_requests_without_a_valid_key_get_401_json(client):
    for response in (client.get("/api/zapier/hooks"), client.get("/api/zapier/hooks", headers=auth("wrong")),
                     subscribe(client, key="x" * 32), client.delete("/api/zapier/hooks/sub_1"),
                     client.get("/api/zapier/samples/ticket.created", headers=auth("é" * 20))):
        assert response.status_code == 401
        body = response.get_json()
        assert body["error"] == "unauthorized" and body["message"]
        assert KEY not in response.get_data(as_text=True)


def test_subscribe_list_unsubscribe(client):
    created = subscribe(client)
    assert created.status_code == 201, created.get_json()
    hook = created.get_json()
    assert hook["id"].startswith("sub_")
    assert hook["target_url"] == "https://hooks.zapier.com/hooks/standard/1/abc/"
    assert hook["event"] == "ticket.created" and hook["created_at"].endswith("Z")
    assert created.headers["Location"] == f"/api/zapier/hooks/{hook['id']}"

    # Zapier's own subscribe body names the URL hookUrl.
    zap = client.post("/api/zapier/hooks", json={"hookUrl": "https://hooks.zapier.com/2", "event": "ticket.resolved"},
                      headers=auth())
    assert zap.status_code == 201 and zap.get_json()["target_url"] == "https://hooks.zapier.com/2"

    listed = client.get("/api/zapier/hooks", headers=auth()).get_json()["hooks"]
    assert [h["id"] for h in listed] == [hook["id"], zap.get_json()["id"]]

    assert client.delete(f"/api/zapier/hooks/{hook['id']}", headers=auth()).status_code == 204
    # Already gone (e.g. removed after Zapier answered 410): done all the same.
    assert client.delete(f"/api/zapier/hooks/{hook['id']}", headers=auth()).status_code == 204
    assert [h["id"] for h in client.get("/api/zapier/hooks", headers=auth()).get_json()["hooks"]] == [
        zap.get_json()["id"]]


def test_unknown_and_not_offered_events_are_422_with_fields(client):
    unknown = subscribe(client, event="ticket.exploded")
    assert unknown.status_code == 422
    assert unknown.get_json()["error"] == "unknown_event" and "event" in unknown.get_json()["fields"]
    not_offered = subscribe(client, event="ticket.escalated")
    assert not_offered.status_code == 422
    body = not_offered.get_json()
    assert body["error"] == "event_not_allowed" and "ticket.created" in body["fields"]["event"][0]
    assert client.get("/api/zapier/samples/ticket.escalated", headers=auth()).status_code == 422
    assert client.get("/api/zapier/hooks", headers=auth()).get_json()["hooks"] == []


@pytest.mark.parametrize("body, field", [
    ({"event": "ticket.created"}, "target_url"),
    ({"target_url": "ftp://files.example.com/x", "event": "ticket.created"}, "target_url"),
    ({"target_url": "not a url", "event": "ticket.created"}, "target_url"),
    ({"target_url": "https://a.example.com", "hookUrl": "https://b.example.com", "event": "ticket.created"},
     "hookUrl"),
    ({"target_url": "https://a.example.com"}, "event"),
    ({"target_url": "https://a.example.com", "event": "ticket.created", "colour": "red"}, "colour"),
])
def test_invalid_subscriptions_name_the_field(client, body, field):
    response = client.post("/api/zapier/hooks", json=body, headers=auth())
    assert response.status_code == 422
    assert response.get_json()["error"] == "validation_failed" and field in response.get_json()["fields"]


def test_bodies_that_are_not_json_objects(client):
    form = client.post("/api/zapier/hooks", data="target_url=x", headers={**auth(), "Content-Type": "text/plain"})
    assert form.status_code == 415 and form.get_json()["error"] == "unsupported_media_type"
    broken = client.post("/api/zapier/hooks", data="{nope", headers={**auth(), "Content-Type": "application/json"})
    assert broken.status_code == 400 and broken.get_json()["error"] == "malformed_json"


def test_samples_are_one_realistic_payload_until_events_happen(client):
    response = client.get("/api/zapier/samples/ticket.created", headers=auth())
    assert response.status_code == 200
    [sample] = response.get_json()
    assert sample["event"] == "ticket.created" and sample["event_id"].startswith("evt_")
    assert sample["ticket_number"] == "TKT-2026-042" and sample["customer_email"] == "jane.doe@example.com"
    assert sample["ticket_url"] == f"https://support.example.com/tickets/{sample['ticket_id']}"


def test_samples_are_the_last_three_real_payloads_newest_first(client):
    for n in range(4):
        created = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
            "subject": f"Printer {n} is on fire", "message": "Help", "customer_email": f"c{n}@example.com"}})
        assert created.status_code == 201
    response = client.get("/api/zapier/samples/ticket.created", headers=auth())
    payloads = response.get_json()
    assert [p["subject"] for p in payloads] == ["Printer 3 is on fire", "Printer 2 is on fire",
                                                "Printer 1 is on fire"]
    assert payloads[0]["ticket_number"].endswith("-004") and payloads[0]["status"] == "new"
    # An event no zapier sink offers is not kept.
    runtime = client.application.extensions["gateway"]
    assert runtime.redis.keys("*zapier:samples:ticket.escalated*") == []


def test_keys_pick_their_sink_and_the_admin_token_is_not_a_zapier_key(make_client):
    second = {"name": "zapier-sales", "type": "zapier", "events": ["*"], "api_keys": [OTHER_KEY]}
    client = make_client(zapier_config(second))
    escalated = subscribe(client, event="ticket.escalated", key=OTHER_KEY)
    assert escalated.status_code == 201 and escalated.get_json()["sink"] == "zapier-sales"
    assert subscribe(client, event="ticket.escalated", key=KEY).status_code == 422
    assert subscribe(client, key=KEY, sink="zapier-sales").status_code == 422
    mine = subscribe(client, key=KEY)
    assert mine.status_code == 201 and mine.get_json()["sink"] == "zapier"
    # Zapier keys are the only Zapier credential: the gateway's admin token opens none of
    # these endpoints (a leaked Zap key is not an admin token, and the reverse holds too).
    for response in (subscribe(client, key=ADMIN), client.get("/api/zapier/hooks", headers=auth(ADMIN)),
                     client.get("/api/zapier/me", headers=auth(ADMIN)),
                     client.delete(f"/api/zapier/hooks/{mine.get_json()['id']}", headers=auth(ADMIN))):
        assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"

    assert len(client.get("/api/zapier/hooks", headers=auth(OTHER_KEY)).get_json()["hooks"]) == 1
    assert len(client.get("/api/zapier/hooks", headers=auth(KEY)).get_json()["hooks"]) == 1
    # A key cannot delete another sink's subscription (nothing of its sink had that id).
    other_id = escalated.get_json()["id"]
    assert client.delete(f"/api/zapier/hooks/{other_id}", headers=auth(KEY)).status_code == 204
    assert other_id in [h["id"] for h in client.get("/api/zapier/hooks", headers=auth(OTHER_KEY)).get_json()["hooks"]]
    assert client.delete(f"/api/zapier/hooks/{other_id}", headers=auth(OTHER_KEY)).status_code == 204
    assert client.get("/api/zapier/hooks", headers=auth(OTHER_KEY)).get_json()["hooks"] == []


def test_without_a_zapier_sink_the_api_says_so(make_client):
    client = make_client({"gateway": {"admin_token": ADMIN}})
    response = client.get("/api/zapier/hooks", headers=auth(KEY))
    assert response.status_code == 404 and response.get_json()["error"] == "zapier_not_configured"


def test_each_subscription_is_a_target_with_a_flat_signed_payload(client, event_samples):
    first = subscribe(client, url="https://hooks.zapier.com/1").get_json()
    second = subscribe(client, url="https://hooks.zapier.com/2").get_json()
    subscribe(client, event="ticket.resolved", url="https://hooks.zapier.com/3")
    sink = client.application.extensions["gateway"].sinks["zapier"]
    event = Event.new("ticket.created", event_samples["ticket.created"])
    targets = sink.targets(event)
    assert [(t.key, t.url) for t in targets] == [(first["id"], "https://hooks.zapier.com/1"),
                                                 (second["id"], "https://hooks.zapier.com/2")]
    request = sink.render(event, targets[0], DeliveryInfo(id="dlv_1", attempt=1, sink="zapier"))
    assert request.url == "https://hooks.zapier.com/1" and request.sign is True
    assert request.headers["Content-Type"] == "application/json"
    assert sink.targets(Event.new("ticket.updated", event_samples["ticket.updated"])) == []


def test_410_drops_only_that_subscription_and_keeps_the_sink_running(client, event_samples):
    gone = subscribe(client, url="https://hooks.zapier.com/1").get_json()
    kept = subscribe(client, url="https://hooks.zapier.com/2").get_json()
    sink = client.application.extensions["gateway"].sinks["zapier"]
    target = sink.targets(Event.new("ticket.created", event_samples["ticket.created"]))[0]
    outcome = sink.classify(Response(410, {}, b""), target)
    assert outcome.kind is OutcomeKind.GONE
    assert sink.on_gone(target, outcome.reason) is False
    hooks = client.get("/api/zapier/hooks", headers=auth()).get_json()["hooks"]
    assert [h["id"] for h in hooks] == [kept["id"]] and gone["id"] != kept["id"]


def test_other_answers_follow_the_reference_policy(client, event_samples):
    subscribe(client)
    sink = client.application.extensions["gateway"].sinks["zapier"]
    [target] = sink.targets(Event.new("ticket.created", event_samples["ticket.created"]))
    assert sink.classify(Response(200, {}, b"{}"), target).kind is OutcomeKind.DELIVERED
    assert sink.classify(Response(404, {}, b""), target).kind is OutcomeKind.GIVE_UP
    assert sink.classify(Response(502, {}, b""), target).kind is OutcomeKind.RETRY
    # Retry-After is the core's to honour (gateway.delivery.retry), not the plugin's.
    assert sink.classify(Response(429, {"Retry-After": "20"}, b""), target).kind is OutcomeKind.RETRY


GUESSER = {"REMOTE_ADDR": "203.0.113.50"}


def test_guessing_api_keys_is_throttled_with_the_admin_token(client):
    # Issue 13: 200 wrong X-API-Keys from one address all got 401, never slower.
    answers = [client.get("/api/zapier/me", headers=auth(f"zk_guess_{n:04d}"), environ_base=GUESSER)
               for n in range(12)]
    assert [a.status_code for a in answers] == [401] * 10 + [429] * 2
    assert answers[-1].get_json()["error"] == "too_many_attempts" and int(answers[-1].headers["Retry-After"]) > 0
    # Locked out for the right key too (else a hit would stand out), and for the admin API:
    # one count per address, whichever credential is being guessed.
    assert client.get("/api/zapier/me", headers=auth(), environ_base=GUESSER).status_code == 429
    assert client.get("/api/tickets", headers={"Authorization": f"Bearer {ADMIN}"},
                      environ_base=GUESSER).status_code == 429
    # Other addresses are not affected.
    assert client.get("/api/zapier/me", headers=auth()).status_code == 200


def test_an_address_locked_out_for_bearer_guesses_cannot_use_the_admin_token_as_a_key(client):
    # Issue 13: locked out of the admin API, `X-API-Key: <admin token>` still answered 200.
    for _ in range(10):
        assert client.get("/api/tickets", headers={"Authorization": "Bearer wrong"},
                          environ_base=GUESSER).status_code == 403
    assert client.get("/api/zapier/hooks", headers=auth(ADMIN), environ_base=GUESSER).status_code == 429
    # And unthrottled, the admin token is still no Zapier key.
    assert client.get("/api/zapier/hooks", headers=auth(ADMIN)).status_code == 401
