"""Concurrent receives in one web process share Redis round trips (a group commit, see
gateway.storage.direct), served by real gunicorn: each request is still answered 201 only
after its own ticket is stored, and a connection lost under a batch fails each request of
it with 503, never a second ticket."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from support.servers import ServedGateway, served_gateway

from gateway.testing import wait_until

BODY = {"event": "ticket.create", "data": {"subject": "Batched", "message": "One of many at once",
                                           "customer_email": "batch@example.com"}}
BURST = 24


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServedGateway]:
    # One worker process: every request of a burst is served by the same process.
    with served_gateway(tmp_path_factory.mktemp("group-commit"), redis_url, web_workers=1) as it:
        yield it


@pytest.fixture
def server(served: ServedGateway, redis_client: Any) -> Iterator[ServedGateway]:
    yield served
    redis_client.execute_command("CLIENT", "UNPAUSE")  # whatever a failed test left


def _create(server: ServedGateway, i: int) -> requests.Response:
    body = {**BODY, "data": {**BODY["data"], "subject": f"Batched {i}"}}
    return requests.post(server.url + "/api/webhooks/receive", json=body, timeout=120)


def _blocked_scripts(redis_client: Any) -> list[dict[str, Any]]:
    # Held by the pause: its EVALSHA parsed (argv kept) but not run. An idle connection whose
    # last command was an EVALSHA shows the same cmd, with nothing held.
    return [c for c in redis_client.client_list(_type="normal")
            if c.get("cmd") == "evalsha" and int(c.get("argv-mem", 0)) > 0]


def test_a_burst_held_up_by_redis_gets_a_201_and_a_stored_ticket_each(server: ServedGateway,
                                                                      redis_client: Any) -> None:
    # Connections this Redis has apart from the burst's (earlier tests of this pytest worker
    # may have left some): the burst is judged by what it adds.
    clients_before = len(redis_client.client_list(_type="normal"))
    redis_client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")  # every write waits
    try:
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            futures = [pool.submit(_create, server, i) for i in range(BURST)]
            wait_until(lambda: _blocked_scripts(redis_client), "a ticket write to reach Redis")
            redis_client.execute_command("CLIENT", "UNPAUSE")
            responses = [future.result() for future in futures]
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    assert [r.status_code for r in responses] == [201] * BURST
    tickets = [r.json()["ticket"] for r in responses]
    assert sorted(t["subject"] for t in tickets) == sorted(f"Batched {i}" for i in range(BURST))
    assert len({t["ticket_number"] for t in tickets}) == BURST
    for ticket in tickets:  # each as answered, stored
        got = requests.get(f"{server.url}/api/tickets/{ticket['id']}", timeout=30,
                           headers={"Authorization": f"Bearer {server.admin_token}"})
        assert got.status_code == 200 and got.json() == {"ticket": ticket}
    # The process wrote them over one connection at a time, not one per request in flight.
    assert len(redis_client.client_list(_type="normal")) - clients_before < BURST // 2


def test_a_connection_lost_under_a_batch_is_a_503_for_each_of_its_requests(server: ServedGateway,
                                                                           redis_client: Any) -> None:
    redis_client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
    try:
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            futures = [pool.submit(_create, server, i) for i in range(BURST)]
            wait_until(lambda: _blocked_scripts(redis_client), "a ticket write to reach Redis")
            redis_client.client_kill_filter(_type="normal", skipme=True)  # the batch in flight loses its reply
            redis_client.execute_command("CLIENT", "UNPAUSE")
            responses = [future.result() for future in futures]
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 503} and 503 in statuses
    for response in responses:
        if response.status_code == 503:
            assert response.json()["error"] == "storage_unavailable"
            # Its write had gone out when the reply was lost: it may exist, and the client is
            # told so (and how to find out without a duplicate), not that nothing was stored.
            assert "may or may not have been stored" in response.json()["message"]
            assert "same Idempotency-Key" in response.json()["message"]
    answered = {r.json()["ticket"]["id"] for r in responses if r.status_code == 201}
    stored = {member.decode() for member in redis_client.zrange("gw:tickets", 0, -1)}
    assert answered == stored  # every 201 is stored; the lost writes never ran, nor ran twice



def test_an_api_publish_whose_reply_is_lost_is_a_503_saying_it_may_exist(server: ServedGateway,
                                                                      redis_client: Any) -> None:
    # The same lost reply under a Flask view (the events API without an Idempotency-Key, whose
    # write is one publish.lua call; a plugin's create_ticket goes the same way): the app's
    # error handler, not the receive endpoint's, answers it.
    ticket = _create(server, 0).json()["ticket"]
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    body = {"event": "ticket.updated", "data": {"ticket": ticket}}
    events_before = redis_client.zcard("gw:events")
    redis_client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            future = pool.submit(requests.post, server.url + "/api/events", json=body, headers=admin, timeout=120)
            wait_until(lambda: _blocked_scripts(redis_client), "the event's write to reach Redis")
            redis_client.client_kill_filter(_type="normal", skipme=True)
            redis_client.execute_command("CLIENT", "UNPAUSE")
            response = future.result()
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    assert response.status_code == 503
    assert response.json()["error"] == "storage_unavailable"
    assert "may or may not have been stored" in response.json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert redis_client.zcard("gw:events") == events_before  # Redis dropped it: never re-sent
