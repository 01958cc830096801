"""The admin console at /admin through Flask's test client: sign-in, session cookie, CSRF,
and what each page shows. (The browser tests in tests/browser drive a real Chromium.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from support.console import TOKEN, csrf_from, sign_in
from support.delivery import drain_queued
from support.plugins import PlainSinkPlugin
from support.servers import Answer, SinkServer

from gateway.delivery import delivery_log
from gateway.runtime import Runtime
from gateway.web.app import create_app

SINK_SECRET = "sink-secret-value"
SINK_PLUGIN = PlainSinkPlugin()  # the engine tests' minimal sink type, "plain"


def config(url: str = "http://127.0.0.1:9/hooks/crm", **gateway: Any) -> dict[str, Any]:
    sinks = [{"name": "crm", "type": "plain", "url": url, "secret": SINK_SECRET,
              "events": ["ticket.created", "ticket.resolved"], "retry_schedule": []}]
    return {"gateway": {"admin_token": TOKEN, **gateway}, "delivery": {"allow_private_networks": True},
            "sinks": sinks}


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client(config(), plugins=[SINK_PLUGIN])


@pytest.fixture
def admin(client: Any) -> Any:
    assert sign_in(client).status_code == 302
    return client


def test_pages_need_sign_in_and_come_back_after_it(client: Any) -> None:
    response = client.get("/admin/events")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/signin?next=/admin/events"
    signed = sign_in(client, next_url="/admin/events")
    assert signed.status_code == 302 and signed.headers["Location"] == "/admin/events"
    assert client.get("/admin/events").status_code == 200


def test_wrong_token_is_refused(client: Any) -> None:
    response = sign_in(client, token="not-the-admin-token")
    assert response.status_code == 401
    assert "That admin token is not valid." in response.text
    assert TOKEN not in response.text
    assert client.get("/admin/integrations").status_code == 302


def test_session_cookie_is_httponly_samesite_and_secure_behind_https(client: Any) -> None:
    cookie = sign_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie

    client.delete_cookie("gateway_admin")
    form = {"token": TOKEN, "csrf_token": csrf_from(client.get("/admin/signin").text)}
    behind_proxy = client.post("/admin/signin", data=form, headers={"X-Forwarded-Proto": "https"})
    assert behind_proxy.status_code == 302
    assert "Secure" in behind_proxy.headers["Set-Cookie"]


def test_signing_in_needs_the_form_csrf_token(client: Any) -> None:
    client.get("/admin/signin")
    response = client.post("/admin/signin", data={"token": TOKEN})
    assert response.status_code == 400
    assert "This form has expired" in response.text
    assert client.get("/admin/integrations").status_code == 302


def test_sign_out_needs_csrf_and_ends_the_session(admin: Any) -> None:
    assert admin.post("/admin/signout").status_code == 400
    assert admin.get("/admin/integrations").status_code == 200
    page = admin.get("/admin/integrations").text
    response = admin.post("/admin/signout", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 302
    assert admin.get("/admin/integrations").status_code == 302


def test_sign_out_revokes_a_copied_cookie_in_every_process(make_runtime: Any) -> None:
    # Issue 13: after sign-out, a copy of the cookie (a shared machine, a proxy log) kept
    # working for the session's whole 12 hours.
    first = create_app(make_runtime(config(), [SINK_PLUGIN])).test_client()
    thief = create_app(make_runtime(config(), [SINK_PLUGIN])).test_client()  # another worker
    sign_in(first)
    cookie = first.get_cookie("gateway_admin")
    assert cookie is not None
    thief.set_cookie("gateway_admin", cookie.value)
    assert thief.get("/admin/integrations").status_code == 200

    page = first.get("/admin/integrations").text
    assert first.post("/admin/signout", data={"csrf_token": csrf_from(page)}).status_code == 302

    assert thief.get("/admin/integrations").status_code == 302
    assert thief.get("/admin/deliveries/dlv_0.json").status_code == 401
    # Signing in again works, with a fresh session.
    assert sign_in(thief).status_code == 302 and thief.get("/admin/integrations").status_code == 200


def cookie_seconds_left(response: Any) -> float:
    match = re.search(r"Expires=([^;]+)", response.headers["Set-Cookie"])
    assert match, response.headers["Set-Cookie"]
    return (parsedate_to_datetime(match.group(1)) - datetime.now(UTC)).total_seconds()


def test_a_session_lasts_an_hour_without_use_by_default(client: Any, make_client: Any) -> None:
    assert 3500 < cookie_seconds_left(sign_in(client)) <= 3600
    short = make_client(config(session_lifetime=300), plugins=[SINK_PLUGIN])
    assert cookie_seconds_left(sign_in(short)) <= 300


def test_next_never_leaves_the_console(client: Any) -> None:
    for target in ("https://evil.example/admin/", "//evil.example/admin/", "/api/tickets", "/admin\\@evil"):
        client.delete_cookie("gateway_admin")
        response = sign_in(client, next_url=target)
        assert response.headers["Location"] == "/admin/integrations", target


def test_session_works_across_processes_sharing_the_token(make_runtime: Any) -> None:
    # Two apps stand in for two gunicorn workers: a cookie from one is good on the other.
    first = create_app(make_runtime(config(), [SINK_PLUGIN])).test_client()
    second = create_app(make_runtime(config(), [SINK_PLUGIN])).test_client()
    sign_in(first)
    cookie = first.get_cookie("gateway_admin")
    assert cookie is not None
    second.set_cookie("gateway_admin", cookie.value)
    assert second.get("/admin/integrations").status_code == 200

    rotated = create_app(make_runtime(config(admin_token="a-new-admin-token-0123456789abcd"),
                                      [SINK_PLUGIN])).test_client()
    rotated.set_cookie("gateway_admin", cookie.value)
    assert rotated.get("/admin/integrations").status_code == 302


def test_json_api_needs_no_csrf(admin: Any) -> None:
    body = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Help",
                                               "customer_email": "a@example.com"}}
    response = admin.post("/api/webhooks/receive", json=body)
    assert response.status_code == 201, response.get_json()


def test_pages_send_security_headers(admin: Any) -> None:
    response = admin.get("/admin/integrations")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_integrations_show_configured_sinks_read_only_without_secrets(make_runtime: Any, tmp_path: Any,
                                                                     redis_url: str, redis_client: Any) -> None:
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(
        f'[gateway]\nadmin_token = "{TOKEN}"\nredis_url = "{redis_url}"\ndata_dir = "{tmp_path / "data"}"\n\n'
        '[[sinks]]\nname = "crm"\ntype = "plain"\nurl = "http://127.0.0.1:9/hooks/crm"\n'
        f'secret = "{SINK_SECRET}"\nevents = ["ticket.created"]\n',
        encoding="utf-8")
    client = create_app(Runtime.from_config(config_file, extra_plugins=[SINK_PLUGIN])).test_client()
    sign_in(client)
    page = client.get("/admin/integrations").text
    assert str(config_file.resolve()) in page
    assert 'id="sink-crm"' in page and ">plain<" in page and "ticket.created" in page
    assert SINK_SECRET not in page


def test_events_catalogue_lists_every_event_with_its_subscribers(admin: Any) -> None:
    page = admin.get("/admin/events").text
    for name in ("ticket.created", "ticket.updated", "ticket.resolved", "ticket.escalated",
                 "ai.response.generated", "ai.response.requires_review", "ai.response.approved",
                 "ai.response.rejected", "conversation.added", "feedback.received"):
        assert f'id="event-{name}"' in page, name
    created_row = page.split('id="event-ticket.created"', 1)[1].split("</tr>", 1)[0]
    assert "crm" in created_row


def test_plugins_page_lists_plugins_with_versions(admin: Any) -> None:
    import gateway

    page = admin.get("/admin/plugins").text
    assert "gateway.publish.builtin_events" in page
    assert gateway.__version__ in page
    assert "plain_sink_plugin" in page


# -- pages backed by the delivery engine: real deliveries to a real local HTTP sink -----------


@pytest.fixture
def console(signed_in: Any, sink: SinkServer) -> Any:
    return signed_in(config(url=sink.url), [SINK_PLUGIN])


def drain(client: Any) -> None:
    """Attempt whatever is queued, in this process (what a worker would do)."""
    drain_queued(client.application.extensions["gateway"])


def form_token(client: Any) -> str:
    return csrf_from(client.get("/admin/integrations").text)


def create_ticket(client: Any, subject: str) -> None:
    body = {"event": "ticket.create", "data": {"subject": subject, "message": "Help",
                                               "customer_email": "jane@example.com"}}
    assert client.post("/api/webhooks/receive", json=body).status_code == 201


def listed_ids(client: Any, query: str) -> list[str]:
    page = client.get(f"/admin/deliveries?{query}")
    assert page.status_code == 200
    return re.findall(r'href="/admin/deliveries/(dlv_[0-9a-f]+)"', page.text)


def test_send_test_event_opens_its_delivery_and_the_poll_sees_it_land(console: Any, sink: SinkServer) -> None:
    response = console.post("/admin/sinks/crm/test",
                            data={"event": "ticket.resolved", "csrf_token": form_token(console)})
    assert response.status_code == 302
    delivery_id = response.headers["Location"].rsplit("/", 1)[1]
    page = console.get(response.headers["Location"]).text
    assert "Test ticket.resolved sent to crm." in page
    assert f'data-poll-url="/admin/deliveries/{delivery_id}.json"' in page
    assert console.get(f"/admin/deliveries/{delivery_id}.json").get_json() == {
        "id": delivery_id, "status": "pending", "attempts": 0}

    drain(console)

    assert console.get(f"/admin/deliveries/{delivery_id}.json").get_json()["status"] == "delivered"
    page = console.get(f"/admin/deliveries/{delivery_id}").text
    assert 'id="attempt-1"' in page and "HTTP 200" in page
    assert sink.received[0].headers["X-Webhook-Event"] == "ticket.resolved"


def test_failed_delivery_is_found_by_filters_shown_with_its_attempt_and_replayed(console: Any,
                                                                                sink: SinkServer) -> None:
    sink.answer(Answer(status=503, body=b"receiver is down for maintenance"))
    create_ticket(console, "Printer on fire")
    drain(console)
    console.post("/admin/sinks/crm/test", data={"event": "ticket.resolved", "csrf_token": form_token(console)})
    drain(console)

    failed = listed_ids(console, "status=failed")
    delivered = listed_ids(console, "status=delivered")
    assert len(failed) == 1 and len(delivered) == 1
    assert listed_ids(console, "event=ticket.created") == failed
    assert listed_ids(console, "sink=crm&since=1h") == delivered + failed  # newest first
    filtered = console.get("/admin/deliveries?status=failed&since=1h").text
    assert "HTTP 503" in filtered
    assert '<option value="failed" selected>' in filtered and '<option value="1h" selected>' in filtered

    page = console.get(f"/admin/deliveries/{failed[0]}").text
    attempt = page.split('id="attempt-1"', 1)[1]
    assert "HTTP 503" in attempt and "receiver is down for maintenance" in attempt and " ms</dd>" in attempt
    assert "X-Webhook-Signature" in attempt and "[hidden]" in attempt
    assert SINK_SECRET not in page

    response = console.post(f"/admin/deliveries/{failed[0]}/replay", data={"csrf_token": form_token(console)})
    assert response.headers["Location"] == f"/admin/deliveries/{failed[0]}"
    assert "Replay queued" in console.get(response.headers["Location"]).text
    drain(console)

    page = console.get(f"/admin/deliveries/{failed[0]}").text
    assert 'id="delivery-status">delivered<' in page and 'id="attempt-2"' in page
    first, *_, last = [r for r in sink.received if r.headers["X-Webhook-Event"] == "ticket.created"]
    assert first.headers["X-Webhook-Delivery"] == last.headers["X-Webhook-Delivery"] == failed[0]


def test_replay_every_failed_delivery_of_a_sink(console: Any, sink: SinkServer) -> None:
    sink.answer(Answer(status=500), Answer(status=500))
    create_ticket(console, "one")
    create_ticket(console, "two")
    drain(console)
    assert len(listed_ids(console, "sink=crm&status=failed")) == 2
    assert "Replay every failed delivery of crm" in console.get("/admin/deliveries?sink=crm&status=failed").text

    response = console.post("/admin/sinks/crm/replay-failed", data={"csrf_token": form_token(console)})
    assert "Replay queued for 2 failed deliveries of crm." in console.get(response.headers["Location"]).text
    drain(console)
    assert listed_ids(console, "status=failed") == []
    assert len(listed_ids(console, "status=delivered")) == 2


def test_a_paused_sink_shows_its_reason_and_counts_and_can_be_resumed(console: Any, sink: SinkServer) -> None:
    sink.answer(Answer(status=410, body=b"gone"))
    create_ticket(console, "gone")
    drain(console)
    card = console.get("/admin/integrations").text.split('id="sink-crm"', 1)[1]
    assert "badge-paused" in card and "HTTP 410" in card
    assert "<strong>1</strong> failed" in card
    assert "Resume" in card

    response = console.post("/admin/sinks/crm/resume", data={"csrf_token": form_token(console)})
    assert response.status_code == 302
    card = console.get("/admin/integrations").text.split('id="sink-crm"', 1)[1]
    assert "crm resumed" in console.get("/admin/integrations").text or "badge-ok" in card
    assert "badge-ok" in card and "badge-paused" not in card


def test_an_admin_pauses_a_sink_from_its_card(console: Any) -> None:
    card = console.get("/admin/integrations").text.split('id="sink-crm"', 1)[1]
    assert "Pause" in card
    response = console.post("/admin/sinks/crm/pause", data={"csrf_token": form_token(console)})
    assert response.status_code == 302
    page = console.get("/admin/integrations").text
    card = page.split('id="sink-crm"', 1)[1]
    assert "crm paused" in page and "badge-paused" in card and "paused by an admin" in card
    assert "Resume" in card


def test_actions_refuse_a_post_without_the_csrf_token(console: Any) -> None:
    for path in ("/admin/sinks/crm/test", "/admin/sinks/crm/resume", "/admin/sinks/crm/pause",
                 "/admin/sinks/crm/replay-failed",
                 "/admin/deliveries/dlv_0/replay"):
        response = console.post(path)
        assert response.status_code == 400, path
        assert "This form has expired" in response.text
    assert listed_ids(console, "") == []  # the test event was not sent


def test_unknown_things_are_clear_404s(console: Any) -> None:
    page = console.get("/admin/deliveries/dlv_missing")
    assert page.status_code == 404 and "past the retention period" in page.text
    poll = console.get("/admin/deliveries/dlv_missing.json")
    assert poll.status_code == 404 and poll.get_json()["error"] == "not_found"
    assert console.post("/admin/sinks/nope/resume", data={"csrf_token": form_token(console)}).status_code == 404
    assert console.post("/admin/deliveries/dlv_missing/replay",
                        data={"csrf_token": form_token(console)}).status_code == 404


def test_the_poll_endpoint_answers_json_401_without_a_session(client: Any) -> None:
    response = client.get("/admin/deliveries/dlv_0.json")
    assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_odd_filter_values_are_ignored_not_errors(console: Any) -> None:
    response = console.get("/admin/deliveries?status=bogus&since=forever&sink=%3Cscript%3E&event=x&limit=-5")
    assert response.status_code == 200 and "<script>" not in response.text


def test_zapier_subscriptions_are_listed_with_their_urls_redacted(make_client: Any) -> None:
    pytest.importorskip("gateway_zapier")
    key = "zk_" + "c" * 29
    zapier = {"name": "zaps", "type": "zapier", "events": ["ticket.created"], "api_keys": [key]}
    client = make_client({"gateway": {"admin_token": TOKEN}, "sinks": [zapier]})
    hook = "https://hooks.zapier.com/hooks/standard/123456/secretpathtoken/"
    created = client.post("/api/zapier/hooks", json={"target_url": hook, "event": "ticket.created"},
                          headers={"X-API-Key": key})
    assert created.status_code == 201, created.get_json()
    sign_in(client)
    card = client.get("/admin/integrations").text.split('id="sink-zaps"', 1)[1]
    assert "Subscriptions" in card and "ticket.created" in card and "hooks.zapier.com" in card
    assert "secretpathtoken" not in card


def test_deliveries_older_than_the_chosen_period_are_left_out(console: Any) -> None:
    create_ticket(console, "now")
    runtime = console.application.extensions["gateway"]
    [row] = delivery_log.list_deliveries(runtime)
    # Age the delivery in the index the way time would (the list reads creation time from it).
    runtime.redis.zadd(runtime.keys.deliveries, {row["id"]: 1})
    runtime.redis.zadd(runtime.keys.sink_deliveries("crm"), {row["id"]: 1})
    assert listed_ids(console, "since=24h") == []
    assert listed_ids(console, "") == [row["id"]]


def test_redis_down_is_a_clear_503_page_not_a_crash(make_runtime: Any, tmp_path: Any) -> None:
    cfg = config()
    cfg["gateway"]["redis_url"] = "redis://127.0.0.1:1/0"  # nothing listens there
    client = create_app(make_runtime(cfg, [SINK_PLUGIN])).test_client()
    assert sign_in(client).status_code == 302  # signing in needs no Redis
    page = client.get("/admin/integrations")
    assert page.status_code == 503 and "cannot reach Redis" in page.text
    assert page.headers["Retry-After"] == "5"
    poll = client.get("/admin/deliveries/dlv_0.json")
    assert poll.status_code == 503 and poll.get_json()["error"] == "storage_unavailable"


def test_unknown_console_pages_are_html_404s(admin: Any) -> None:
    response = admin.get("/admin/no-such-page")
    assert response.status_code == 404 and "no such page in the admin console" in response.text


def test_stylesheet_and_script_are_served_without_a_session(client: Any) -> None:
    css = client.get("/admin/static/admin.css")
    assert css.status_code == 200 and css.mimetype == "text/css" and ":focus-visible" in css.text
    script = client.get("/admin/static/admin.js")
    assert script.status_code == 200 and "data-poll-url" in script.text


def test_bidi_overrides_and_control_characters_in_ticket_data_are_shown_escaped(console: Any,
                                                                                 sink: SinkServer) -> None:
    # Issue 13: a U+202E in a ticket field made "invoice_exe.pdf" display as "invoice_fdp.exe".
    sink.answer(Answer(status=503, body="answer \u202eevil\x1b[2J\nsecond line".encode()))
    create_ticket(console, "invoice_\u202efdp.exe\x07")
    drain(console)
    delivery_id = listed_ids(console, "event=ticket.created")[0]
    page = console.get(f"/admin/deliveries/{delivery_id}").text
    assert "\u202e" not in page and "\x07" not in page and "\x1b" not in page
    assert "invoice_\\u202efdp.exe\\u0007" in page  # the payload (JSON escapes C0 itself), made visible
    assert "answer \\u202eevil\\x1b[2J\nsecond line" in page  # the response excerpt keeps its lines


def test_a_stored_time_that_only_looks_numeric_is_no_time() -> None:
    from gateway.web.admin.blueprint import to_datetime

    assert to_datetime("1700000000") == datetime.fromtimestamp(1_700_000_000, UTC)
    assert to_datetime("1.²") is None  # float() refuses a superscript: not a 500 on the page
