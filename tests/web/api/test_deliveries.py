"""The delivery log over HTTP: list with filters, show with attempts, replay; JSON errors.

Deliveries are attempted in this process by the real drainer (drain_queued), against a
real local HTTP sink, on the test Redis.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support.configs import engine_config, sink_table
from support.delivery import drain_queued, publish_tickets
from support.plugins import PlainSinkPlugin
from support.servers import Answer, SinkServer

from gateway.delivery import delivery_log
from gateway.web.app import create_app

AUTH = {"Authorization": "Bearer admin-token-1-0123456789abcdef01"}


@pytest.fixture
def server():
    with SinkServer() as running:
        yield running


@pytest.fixture
def gateway(make_runtime: Any, redis_url: str, tmp_path: Path, server: SinkServer):
    config = engine_config(redis_url, tmp_path, [sink_table("hook", server.url, retry_schedule=[], secret="topsecret"),
                                                 sink_table("other", server.url, events=["feedback.received"])])
    runtime = make_runtime(config, plugins=[PlainSinkPlugin()])
    app = create_app(runtime)
    app.testing = True
    return runtime, app.test_client()


def test_deliveries_need_the_admin_token(gateway):
    _, client = gateway
    assert client.get("/api/deliveries").get_json()["error"] == "unauthorized"
    wrong = client.get("/api/deliveries", headers={"Authorization": "Bearer nope-nope"})
    assert wrong.status_code == 403 and wrong.get_json()["error"] == "forbidden"
    assert client.post("/api/deliveries/x/replay").status_code == 401


def test_list_filters_show_and_replay(gateway, server):
    runtime, client = gateway
    server.answer(Answer(500, b"nope"))
    [failed_id] = publish_tickets(runtime)
    time.sleep(0.01)  # distinct creation times (ms), so "newest first" has one answer
    [delivered_id] = publish_tickets(runtime)
    drain_queued(runtime, concurrency=1)  # one at a time: the scripted 500 goes to the first

    listed = client.get("/api/deliveries", headers=AUTH).get_json()["deliveries"]
    assert [d["id"] for d in listed] == [delivered_id, failed_id]  # newest first
    only_failed = client.get("/api/deliveries?status=failed&sink=hook", headers=AUTH).get_json()["deliveries"]
    assert [d["id"] for d in only_failed] == [failed_id]
    assert only_failed[0]["last_status_code"] == 500 and only_failed[0]["attempts"] == 1
    assert client.get("/api/deliveries?event=feedback.received", headers=AUTH).get_json()["deliveries"] == []
    assert len(client.get("/api/deliveries?limit=1&since=1h", headers=AUTH).get_json()["deliveries"]) == 1

    shown = client.get(f"/api/deliveries/{failed_id}", headers=AUTH).get_json()["delivery"]
    assert shown["status"] == "failed" and shown["payload"]["event"] == "ticket.created"
    [attempt] = shown["attempt_log"]
    assert attempt["status_code"] == 500 and attempt["response_excerpt"] == "nope"
    assert "no retries left" in attempt["error"]["message"]
    assert attempt["request"]["headers"]["X-Webhook-Signature"] == "[hidden]"
    assert "topsecret" not in client.get(f"/api/deliveries/{failed_id}", headers=AUTH).get_data(as_text=True)

    replayed = client.post(f"/api/deliveries/{failed_id}/replay", headers=AUTH)
    assert replayed.status_code == 202 and replayed.get_json()["delivery"]["status"] == "pending"
    again = client.post(f"/api/deliveries/{failed_id}/replay", headers=AUTH)
    assert again.status_code == 409 and again.get_json()["error"] == "delivery_busy"
    drain_queued(runtime)
    shown = client.get(f"/api/deliveries/{failed_id}", headers=AUTH).get_json()["delivery"]
    assert shown["status"] == "delivered" and shown["replays"] == 1
    assert [r.headers["X-Webhook-Delivery"] for r in server.received].count(failed_id) == 2


@pytest.mark.parametrize(("query", "field"), [
    ("status=lost", "status"), ("limit=0", "limit"), ("limit=abc", "limit"), ("limit=³", "limit"),
    ("since=yesterday", "since"),
])
def test_bad_query_parameters_are_clear_400s(gateway, query, field):
    _, client = gateway
    response = client.get(f"/api/deliveries?{query}", headers=AUTH)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_parameter" and field in body["fields"]


def test_unknown_ids_and_sinks_are_404s(gateway):
    _, client = gateway
    assert client.get("/api/deliveries/dlv_nope", headers=AUTH).get_json()["error"] == "delivery_not_found"
    assert client.post("/api/deliveries/dlv_nope/replay", headers=AUTH).status_code == 404
    assert client.get("/api/deliveries?sink=nope", headers=AUTH).get_json()["error"] == "sink_not_found"


def test_bulk_replay_takes_the_matching_deliveries_of_a_sink(gateway, server):
    runtime, _ = gateway
    server.answer(Answer(500), Answer(500))
    *failed, delivered = publish_tickets(runtime, 3)
    drain_queued(runtime, concurrency=1)  # one at a time: the scripted 500s go to the first two
    scanned: list[int] = []

    assert delivery_log.replay_matching(runtime, "hook", "failed", on_scanned=scanned.append) == (2, 2)
    assert len(scanned) == 3
    assert delivery_log.replay_matching(runtime, "hook", "failed") == (0, 0)  # now pending
    drain_queued(runtime)
    assert {delivery_log.get_delivery(runtime, i)["status"] for i in [*failed, delivered]} == {"delivered"}
    assert server.count() == 5


def test_expired_deliveries_drop_out_of_the_log_and_its_indexes(gateway):
    runtime, client = gateway
    kept, expired = publish_tickets(runtime, 2)
    runtime.redis.delete(runtime.keys.delivery(expired))  # as retention would
    listed = client.get("/api/deliveries", headers=AUTH).get_json()["deliveries"]
    assert [d["id"] for d in listed] == [kept]
    assert runtime.redis.zscore(runtime.keys.deliveries, expired) is None
    assert runtime.redis.zscore(runtime.keys.sink_deliveries("hook"), expired) is None
