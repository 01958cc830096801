"""Settings → Integrations through the HTTP API, as an admin uses it: create, read, edit,
disable, rotate and delete sinks with a bearer token, on a real Redis, with real HTTP
servers as destinations and the real delivery engine in process. Every answer is checked
for what an admin would see, and that no secret leaks into it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import standardwebhooks

from gateway.delivery import wakeups
from gateway.testing import RecordingSink

ALICE = "alice-token-0123456789abcdef0123456789"
BOB = "bob-token-0123456789abcdef0123456789ab"
FILE_SECRET = "file-sink-secret"
TICKET = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Help",
                                             "customer_email": "a@example.com"}}
WHSEC = re.compile(r"^whsec_[A-Za-z0-9+/]{32}$")  # base64 of 24 bytes: 32 characters, no padding


# ---- verbatim from the guide ("Verifying Signatures", Python) ----
def verify_signature(payload, signature, secret):
    expected = hmac.new(
        secret.encode(),
        payload.encode(),
        hashlib.sha256
    ).hexdigest()

    return hmac.compare_digest(signature, expected)
# ---- end of the guide's code ----


@pytest.fixture
def gateway_config(recording_sink: RecordingSink) -> dict[str, Any]:
    return {"gateway": {"admin_tokens": [{"name": "alice", "token": ALICE}, {"name": "bob", "token": BOB}]},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0},
            "sinks": [recording_sink.sink("filed", events=["ticket.created"], secret=FILE_SECRET)]}


@contextlib.contextmanager
def destination() -> Iterator[RecordingSink]:
    """A real HTTP server playing a destination, for the sinks a test creates."""
    sink = RecordingSink().start()
    try:
        yield sink
    finally:
        sink.stop()


def admin(client: Any, method: str, path: str, token: str = ALICE, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return client.open(path, method=method, headers=headers, **kwargs)


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"name": "crm", "type": "generic_webhook", "url": url, "events": ["ticket.created"], **extra}


def create(client: Any, body: dict[str, Any], token: str = ALICE) -> Any:
    return admin(client, "POST", "/api/sinks", token, json=body)


def receive(client: Any, **data: Any) -> dict[str, Any]:
    answer = client.post("/api/webhooks/receive", json={**TICKET, "data": {**TICKET["data"], **data}})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["ticket"]


def no_secret_in(doc: Any, *secrets: str) -> None:
    text = json.dumps(doc)
    for secret in secrets:
        assert secret not in text


def test_create_a_webhook_get_its_secret_once_and_receive_signed_deliveries(client, app, drain_deliveries):
    with destination() as crm:
        created = create(client, webhook(crm.url))

        assert created.status_code == 201
        body = created.get_json()
        secret = body["secret"]
        assert WHSEC.match(secret)
        assert created.headers["Location"] == "/api/sinks/crm"
        assert created.headers["ETag"]
        sink = body["sink"]
        assert (sink["name"], sink["type"], sink["source"], sink["enabled"], sink["signed"]) == (
            "crm", "generic_webhook", "api", True, True)
        assert sink["created_at"] and sink["updated_at"] and sink["state"] == "ok"
        no_secret_in(sink, secret)

        listed = admin(client, "GET", "/api/sinks").get_json()["sinks"]
        assert [(s["name"], s["source"]) for s in listed] == [("filed", "config"), ("crm", "api")]
        one = admin(client, "GET", "/api/sinks/crm")
        assert one.status_code == 200 and one.headers["ETag"] == created.headers["ETag"]
        no_secret_in([listed, one.get_json()], secret, FILE_SECRET)

        ticket = receive(client)
        drain_deliveries(app)
        [request] = crm.wait_for(1)
        assert request.json()["data"]["ticket"]["id"] == ticket["id"]
        # The guide's own verifier, with the secret as the API returned it.
        assert verify_signature(request.body.decode(), request.header("X-Webhook-Signature"), secret)
        # And a Standard Webhooks library, as it is (it decodes the whsec_ secret itself).
        standardwebhooks.Webhook(secret).verify(request.body, {k.lower(): v for k, v in request.headers.items()})


def test_slack_integration_gets_no_secret_and_its_url_is_never_shown(client, app, drain_deliveries):
    with destination() as slack:
        url = slack.url + "/T000/B000/XXXXSECRETPATH"
        created = create(client, {"name": "slack-support", "type": "slack", "url": url, "channel": "#support",
                                  "events": ["ticket.created"]})
        assert created.status_code == 201
        body = created.get_json()
        assert "secret" not in body and body["sink"]["signed"] is False
        assert body["sink"]["options"]["channel"] == "#support"
        no_secret_in([body, admin(client, "GET", "/api/sinks").get_json(), admin(client, "GET", "/api/audit")
                      .get_json()], "XXXXSECRETPATH")
        receive(client)
        drain_deliveries(app)
        assert slack.wait_for(1)[0].path == "/hook/T000/B000/XXXXSECRETPATH"
        rotated = admin(client, "POST", "/api/sinks/slack-support/rotate-secret")
        assert (rotated.status_code, rotated.get_json()["error"]) == (409, "sink_not_signed")


def test_a_given_secret_is_used_and_not_returned(client, app, drain_deliveries):
    with destination() as crm:
        created = create(client, webhook(crm.url, secret="my-own-secret-1234"))
        assert created.status_code == 201 and "secret" not in created.get_json()
        receive(client)
        drain_deliveries(app)
        request = crm.wait_for(1)[0]
        assert verify_signature(request.body.decode(), request.header("X-Webhook-Signature"), "my-own-secret-1234")


def test_names_are_unique_across_the_file_and_the_api(client):
    assert create(client, webhook("https://example.com/a")).status_code == 201
    again = create(client, webhook("https://example.com/b"))
    assert (again.status_code, again.get_json()["error"]) == (409, "sink_exists")
    filed = create(client, webhook("https://example.com/b", name="filed"))
    assert (filed.status_code, filed.get_json()["error"]) == (409, "sink_exists")


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"type": "carrier_pigeon"}, "type", "Unknown sink type 'carrier_pigeon'"),
    ({"events": ["ticket.exploded"]}, "events", "Unknown event 'ticket.exploded'."),
    ({"url": "not a url"}, "url", "Not a valid URL."),
    ({"url": "ftp://example.com/x"}, "url", "Not a valid URL."),
    ({"max_in_flight": 0}, "max_in_flight", "Must be greater than or equal to 1"),
    ({"colour": "blue"}, "colour", "Unknown field."),
    ({"headers": {"X-Webhook-Signature": "x"}}, "headers", "X-Webhook-Signature cannot be set here"),
    ({"name": "crm/../etc"}, "name", "Use letters, digits"),
    ({"name": "x" * 65}, "name", "Use letters, digits"),
    ({"events": []}, "events", "Shorter than minimum length 1."),
    ({"retry_schedule": "soon"}, "retry_schedule", "Not a valid list."),
])
def test_bad_input_is_a_422_naming_the_field_and_nothing_is_stored(client, body, field, message):
    answer = create(client, {**webhook("https://example.com/hook"), **body})

    assert answer.status_code == 422
    error = answer.get_json()
    assert error["error"] == "validation_failed"
    assert any(message in m for m in error["fields"][field]), error
    assert [s["name"] for s in admin(client, "GET", "/api/sinks").get_json()["sinks"]] == ["filed"]
    assert admin(client, "GET", "/api/audit").get_json()["entries"] == []


def test_the_same_messages_as_config_check(client, plugins_config_errors):
    answer = create(client, {**webhook("not a url"), "max_in_flight": 0})
    assert answer.get_json()["fields"] == plugins_config_errors({**webhook("not a url"), "max_in_flight": 0})


@pytest.fixture
def plugins_config_errors():
    from gateway.config import ConfigError, parse_config
    from gateway.plugins import load_plugins

    def errors(table: dict[str, Any]) -> dict[str, list[str]]:
        with pytest.raises(ConfigError) as raised:
            parse_config({"sinks": [table]}, load_plugins())
        return {path.removeprefix("sinks[0]."): messages for path, messages in raised.value.errors.items()}

    return errors


def test_a_destination_the_ssrf_policy_refuses_is_a_422_on_url(make_client):
    client = make_client({"gateway": {"admin_token": ALICE}})
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "http://[::1]/"):
        answer = create(client, webhook(url))
        assert answer.status_code == 422, url
        assert "allow_private_networks" in answer.get_json()["fields"]["url"][0]
    assert create(client, webhook("https://93.184.215.14/hook")).status_code == 201


def test_malformed_bodies_are_4xx_never_500(client, app):
    assert admin(client, "POST", "/api/sinks", data="{", content_type="application/json").status_code == 400
    assert admin(client, "POST", "/api/sinks", json=["crm"]).status_code == 400
    assert admin(client, "POST", "/api/sinks", data="name=crm").status_code == 415
    huge = webhook("https://example.com/hook", headers={"X-Pad": "x" * 4000},
                   mention={str(i): "y" * 100 for i in range(20_000)})
    assert admin(client, "POST", "/api/sinks", json=huge).status_code == 413
    assert create(client, {"name": None, "type": 5, "events": "x"}).status_code == 422
    assert create(client, {"name": "ok", "type": ["x"], "events": [1]}).status_code == 422
    assert admin(client, "PATCH", "/api/sinks/nope", json={}).status_code == 404


def test_patch_changes_what_the_very_next_event_and_attempt_use(client, app, drain_deliveries):
    with destination() as old, destination() as new:
        create(client, webhook(old.url, retry_schedule=[0.2]))
        old.reply(500)
        receive(client)
        drain_deliveries(app)
        assert len(old.wait_for(1)) == 1  # refused once: its delivery now waits to be retried

        patched = admin(client, "PATCH", "/api/sinks/crm", json={"url": new.url, "headers": {"X-Tenant": "acme"}})
        assert patched.status_code == 200
        assert patched.get_json()["sink"]["options"]["headers"] == {"X-Tenant": "[hidden]"}

        receive(client)
        # The first delivery's retry comes due (what rq's scheduler does at its time).
        [waiting] = admin(client, "GET", "/api/deliveries?status=retrying").get_json()["deliveries"]
        wakeups.requeue(app.extensions["gateway"], "retry", [(waiting["id"], "1")])
        drain_deliveries(app)

        assert len(new.wait_for(2)) == 2 and len(old.requests) == 1
        assert {r.json()["data"]["ticket"]["subject"] for r in new.requests} == {"Printer on fire"}
        assert all(r.header("X-Tenant") == "acme" for r in new.requests)
        shown = admin(client, "GET", f"/api/deliveries/{waiting['id']}").get_json()["delivery"]
        assert [a["status_code"] for a in shown["attempt_log"]] == [500, 200]


def test_patch_that_leaves_no_events_or_changes_name_or_type_is_refused(client):
    create(client, webhook("https://example.com/hook"))
    for patch, field in (({"events": []}, "events"), ({"events": None}, "events"), ({"name": "other"}, "name"),
                         ({"type": "slack"}, "type"), ({"url": None}, "url")):
        answer = admin(client, "PATCH", "/api/sinks/crm", json=patch)
        assert answer.status_code == 422 and field in answer.get_json()["fields"], patch
    assert admin(client, "GET", "/api/sinks/crm").get_json()["sink"]["events"] == ["ticket.created"]


def test_if_match_refuses_a_stale_edit(client):
    etag = create(client, webhook("https://example.com/hook")).headers["ETag"]
    first = admin(client, "PATCH", "/api/sinks/crm", json={"max_in_flight": 3}, headers={"If-Match": etag})
    assert first.status_code == 200 and first.headers["ETag"] != etag

    stale = admin(client, "PATCH", "/api/sinks/crm", token=BOB, json={"max_in_flight": 7},
                  headers={"If-Match": etag})
    assert (stale.status_code, stale.get_json()["error"]) == (412, "precondition_failed")
    assert admin(client, "GET", "/api/sinks/crm").get_json()["sink"]["max_in_flight"] == 3
    gone = admin(client, "DELETE", "/api/sinks/crm", headers={"If-Match": etag})
    assert gone.status_code == 412
    assert admin(client, "DELETE", "/api/sinks/crm", headers={"If-Match": first.headers["ETag"]}).status_code == 204


def test_file_sinks_are_read_only(client):
    for method, path, body in (("PATCH", "/api/sinks/filed", {"enabled": False}), ("DELETE", "/api/sinks/filed", None),
                               ("POST", "/api/sinks/filed/rotate-secret", None)):
        answer = admin(client, method, path, json=body)
        assert (answer.status_code, answer.get_json()["error"]) == (409, "sink_managed_by_config"), path
    assert admin(client, "GET", "/api/sinks/filed").get_json()["sink"]["source"] == "config"


def test_a_disabled_sink_gets_nothing_until_enabled(client, app, drain_deliveries):
    with destination() as crm:
        create(client, webhook(crm.url))
        assert admin(client, "PATCH", "/api/sinks/crm", json={"enabled": False}).get_json()["sink"]["enabled"] is False
        receive(client)
        drain_deliveries(app)
        assert crm.requests == []
        admin(client, "PATCH", "/api/sinks/crm", json={"enabled": True})
        receive(client)
        drain_deliveries(app)
        assert len(crm.wait_for(1)) == 1


def test_delete_cancels_waiting_deliveries_and_none_is_attempted(client, app, drain_deliveries):
    with destination() as crm:
        create(client, webhook(crm.url, retry_schedule=[3600]))
        crm.reply(500)
        receive(client)
        drain_deliveries(app)  # one attempt refused: retrying, an hour from now
        receive(client)  # and one pending, never attempted yet
        assert admin(client, "DELETE", "/api/sinks/crm").status_code == 204

        drain_deliveries(app)
        assert len(crm.requests) == 1
        log = admin(client, "GET", "/api/deliveries?sink=crm").get_json()["deliveries"]
        assert [(d["status"], d["cancel_reason"]) for d in log] == [("cancelled", "sink_deleted")] * 2
        assert "sink_deleted" in log[0]["last_error"]
        assert admin(client, "GET", "/api/sinks/crm").status_code == 404
        # A sink created again under the name starts clean, with none of the old deliveries.
        create(client, webhook(crm.url))
        drain_deliveries(app)
        assert len(crm.requests) == 1


def test_rotation_signs_with_both_secrets_for_the_overlap_then_the_new_one_alone(client, app, drain_deliveries):
    with destination() as crm:
        old = create(client, webhook(crm.url)).get_json()["secret"]
        rotated = admin(client, "POST", "/api/sinks/crm/rotate-secret", json={"overlap": 2})
        assert rotated.status_code == 200
        new = rotated.get_json()["secret"]
        assert WHSEC.match(new) and new != old and rotated.get_json()["previous_secret_valid_until"]

        receive(client)
        drain_deliveries(app)
        request = crm.wait_for(1)[0]
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert len(headers["webhook-signature"].split()) == 2
        assert verify_signature(request.body.decode(), headers["x-webhook-signature"], new)
        for secret in (old, new):  # a receiver still on the old secret, and one already on the new
            standardwebhooks.Webhook(secret).verify(request.body, headers)

        time.sleep(2.1)  # the overlap ends
        receive(client)
        drain_deliveries(app)
        later = {k.lower(): v for k, v in crm.wait_for(2)[1].headers.items()}
        assert len(later["webhook-signature"].split()) == 1
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(old).verify(crm.requests[1].body, later)


def test_the_receive_secret_rotates_with_an_overlap(client):
    assert admin(client, "GET", "/api/receive-secret").get_json()["source"] is None
    first = admin(client, "POST", "/api/receive-secret/rotate").get_json()["secret"]
    body = json.dumps(TICKET).encode()

    def post(secret: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Webhook-Signature"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return client.post("/api/webhooks/receive", data=body, headers=headers).status_code

    assert (post(None), post("wrong"), post(first)) == (401, 401, 201)
    second = admin(client, "POST", "/api/receive-secret/rotate").get_json()["secret"]
    assert (post(first), post(second)) == (201, 201)
    status = admin(client, "GET", "/api/receive-secret").get_json()
    assert status["source"] == "api" and status["signed"] and status["previous_valid_until"]
    third = admin(client, "POST", "/api/receive-secret/rotate", json={"overlap": 0}).get_json()["secret"]
    assert (post(first), post(second), post(third)) == (401, 401, 201)


def test_the_file_receive_secret_is_shown_as_config_and_not_rotated(make_client):
    client = make_client({"gateway": {"admin_token": ALICE, "secret": "file-receive-secret"}})
    assert admin(client, "GET", "/api/receive-secret").get_json()["source"] == "config"
    answer = admin(client, "POST", "/api/receive-secret/rotate")
    assert (answer.status_code, answer.get_json()["error"]) == (409, "receive_secret_managed_by_config")


def test_the_audit_log_tells_who_did_what_and_never_a_secret(client, app, drain_deliveries):
    created = create(client, webhook("https://example.com/hook", headers={"X-Token": "header-secret-value"}))
    secret = created.get_json()["secret"]
    admin(client, "PATCH", "/api/sinks/crm", token=BOB, json={"events": ["*"], "url": "https://example.org/x/y"})
    admin(client, "PATCH", "/api/sinks/crm", token=BOB, json={"enabled": False})
    admin(client, "PATCH", "/api/sinks/crm", json={"enabled": True})
    new_secret = admin(client, "POST", "/api/sinks/crm/rotate-secret").get_json()["secret"]
    admin(client, "POST", "/api/sinks/filed/resume", token=BOB)
    receive_secret = admin(client, "POST", "/api/receive-secret/rotate").get_json()["secret"]
    admin(client, "DELETE", "/api/sinks/crm")

    entries = admin(client, "GET", "/api/audit").get_json()["entries"]

    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        ("alice", "delete", "sink:crm"), ("alice", "rotate", "receive_secret"), ("bob", "resume", "sink:filed"),
        ("alice", "rotate", "sink:crm"), ("alice", "enable", "sink:crm"), ("bob", "disable", "sink:crm"),
        ("bob", "update", "sink:crm"), ("alice", "create", "sink:crm")]
    update = entries[6]["changes"]
    assert update["events"] == {"from": ["ticket.created"], "to": ["*"]}
    assert update["url"] == {"from": "https://example.com/…", "to": "https://example.org/x/…"}
    assert entries[7]["changes"]["secret"] == {"from": None, "to": "[hidden]"}
    assert entries[7]["changes"]["headers"] == {"from": None, "to": {"X-Token": "[hidden]"}}
    assert all(re.match(r"^\d{4}-\d\d-\d\dT", e["at"]) for e in entries)
    no_secret_in(entries, secret, new_secret, receive_secret, "header-secret-value")
    page = admin(client, "GET", "/api/audit?limit=3").get_json()
    assert len(page["entries"]) == 3
    rest = admin(client, "GET", f"/api/audit?cursor={page['next_cursor']}").get_json()["entries"]
    assert [e["id"] for e in page["entries"] + rest] == [e["id"] for e in entries]
    assert admin(client, "GET", "/api/audit?cursor=nonsense").status_code == 400
    assert admin(client, "GET", "/api/audit?limit=³").status_code == 400  # a digit to isdigit() only


def test_twenty_parallel_patches_leave_one_whole_state(app):
    client = app.test_client()
    create(client, webhook("https://example.com/hook"))
    states = [{"url": f"https://example.com/{i}", "max_in_flight": i + 1, "timeout": i + 1.5,
               "events": ["ticket.created", "ticket.updated"][: 1 + i % 2]} for i in range(20)]
    answers: list[int] = []

    def patch(state: dict[str, Any]) -> None:
        answers.append(admin(app.test_client(), "PATCH", "/api/sinks/crm", json=state).status_code)

    threads = [threading.Thread(target=patch, args=(state,)) for state in states]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 20
    runtime = app.extensions["gateway"]
    final = runtime.refresh().configs["crm"]
    shown = {"url": final.options["url"], "max_in_flight": final.max_in_flight, "timeout": final.timeout,
             "events": list(final.events)}
    assert shown in states
    assert final.revision == 21
