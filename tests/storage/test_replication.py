"""``durability = "replicated"``: a write is acknowledged only once a replica confirmed it
(WAIT); when none does in time the answer is ``503 replication_timeout``, the write may
exist, and a retry with the same Idempotency-Key gets the original back. Real master,
replica and sentinels on loopback; the replica is stopped to make the WAIT fall short."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.client import Pipeline
from support.sentinel import RedisSet, redis_set

from gateway.storage.connection import connect
from gateway.storage.direct import DirectScript
from gateway.storage.replication import (
    LOCAL,
    Durability,
    ReplicatedPipeline,
    ReplicationTimeout,
    acknowledged_pipeline,
)

TICKET = {"event": "ticket.create", "data": {"subject": "Printer on fire", "message": "Again.",
                                             "customer_email": "ops@example.com"}}
QUICK = Durability(replicas=1, timeout_ms=300)


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSet]:
    with redis_set(tmp_path_factory.mktemp("replicated")) as made:
        yield made


@pytest.fixture
def replica_down(sentinels: RedisSet) -> Iterator[None]:
    """The replica is stopped for the test (the master stays), then started and synced again."""
    replica = next(node for node in sentinels.data if node.address != sentinels.master_address())
    replica.stop()
    try:
        yield
    finally:
        replica.start()
        sentinels.wait_for_replicas(1)


def _replica(sentinels: RedisSet) -> redis.Redis:
    return next(node for node in sentinels.data if node.address != sentinels.master_address()).client()


# -- the storage calls ------------------------------------------------------------------------------

def test_a_confirmed_script_write_is_on_the_replica_when_the_call_returns(sentinels: RedisSet) -> None:
    client = connect(sentinels.url())
    script = DirectScript(client, "return redis.call('INCR', 'confirmed')")
    replica = _replica(sentinels)
    for _ in range(20):
        value = script([], QUICK)
        # No waiting here: WAIT already did, so the replica has this very value.
        assert int(replica.get("confirmed") or 0) >= value


def test_an_unconfirmed_script_write_raises_with_its_reply(sentinels: RedisSet, replica_down: None) -> None:
    client = connect(sentinels.url())
    script = DirectScript(client, "return redis.call('INCR', 'unconfirmed')")
    started = time.monotonic()
    with pytest.raises(ReplicationTimeout) as raised:
        script([], QUICK)
    assert time.monotonic() - started >= QUICK.timeout_ms / 1000 * 0.9
    assert raised.value.acked == 0 and raised.value.result == 1
    assert not isinstance(raised.value, redis.ConnectionError)  # redis-py must not send it again
    assert client.get("unconfirmed") == b"1"  # the write exists: "it may still exist"
    assert script([]) == 2  # local durability: no WAIT, the same connection still in step


def test_an_acknowledged_pipeline_waits_for_the_replica(sentinels: RedisSet) -> None:
    client = connect(sentinels.url())
    with acknowledged_pipeline(client, QUICK) as pipe:
        pipe.set("piped", "1")
        pipe.incr("piped")
        assert pipe.execute() == [True, 2]  # the barrier's reply is not among them
    assert _replica(sentinels).get("piped") == b"2"
    with acknowledged_pipeline(client, LOCAL) as pipe:
        assert type(pipe) is Pipeline and pipe.transaction


def test_an_unconfirmed_pipeline_raises_once_and_is_not_sent_again(sentinels: RedisSet,
                                                                    replica_down: None) -> None:
    client = connect(sentinels.url())
    client.delete("counted")
    with acknowledged_pipeline(client, QUICK) as pipe, pytest.raises(ReplicationTimeout) as raised:
        assert isinstance(pipe, ReplicatedPipeline)
        pipe.incr("counted")
        pipe.execute()
    assert raised.value.result == [1]
    assert client.get("counted") == b"1"


# -- through the HTTP API ---------------------------------------------------------------------------

@pytest.fixture
def replicated_client(make_client: Callable[..., Any], sentinels: RedisSet) -> Any:
    return make_client({"gateway": {"redis_url": sentinels.url(), "durability": "replicated",
                                    "durability_replicas": 1, "durability_timeout": 0.3,
                                    "key_prefix": f"rep{time.monotonic_ns()}:"}})


def test_receive_answers_201_once_the_replica_has_the_ticket(replicated_client: Any, sentinels: RedisSet) -> None:
    response = replicated_client.post("/api/webhooks/receive", json=TICKET, headers={"Idempotency-Key": "rep-1"})
    assert response.status_code == 201, response.get_json()
    ticket = response.get_json()["ticket"]
    prefix = replicated_client.application.extensions["gateway"].settings.key_prefix
    assert _replica(sentinels).exists(f"{prefix}ticket:{ticket['id']}")


def test_receive_unconfirmed_is_503_replication_timeout_and_a_retry_gets_the_original(
        replicated_client: Any, sentinels: RedisSet) -> None:
    runtime = replicated_client.application.extensions["gateway"]
    replica = next(node for node in sentinels.data if node.address != sentinels.master_address())
    replica.stop()
    try:
        first = replicated_client.post("/api/webhooks/receive", json=TICKET, headers={"Idempotency-Key": "rep-2"})
        assert first.status_code == 503
        assert first.get_json()["error"] == "replication_timeout"
        assert "may still exist" in first.get_json()["message"]
        assert int(first.headers["Retry-After"]) > 0
        # The same key again while the replica is still away: the original is there, but not
        # confirmed either, so it is not acknowledged now either.
        again = replicated_client.post("/api/webhooks/receive", json=TICKET, headers={"Idempotency-Key": "rep-2"})
        assert (again.status_code, again.get_json()["error"]) == (503, "replication_timeout")
    finally:
        replica.start()
        sentinels.wait_for_replicas(1)
    retried = replicated_client.post("/api/webhooks/receive", json=TICKET, headers={"Idempotency-Key": "rep-2"})
    assert retried.status_code == 200, retried.get_json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert runtime.redis.zcard(runtime.keys.tickets) == 1  # one ticket, never a duplicate
    assert retried.get_json()["ticket"]["id"] == runtime.redis.zrange(runtime.keys.tickets, 0, 0)[0].decode()


def test_ticket_patch_and_events_api_honour_replicated_durability(replicated_client: Any,
                                                                  sentinels: RedisSet) -> None:
    runtime = replicated_client.application.extensions["gateway"]
    admin = {"Authorization": f"Bearer {runtime.settings.admin_token}"}
    ticket = replicated_client.post("/api/webhooks/receive", json=TICKET).get_json()["ticket"]
    assert replicated_client.patch(f"/api/tickets/{ticket['id']}", json={"status": "open"},
                                   headers=admin).status_code == 200
    replica = next(node for node in sentinels.data if node.address != sentinels.master_address())
    replica.stop()
    try:
        patched = replicated_client.patch(f"/api/tickets/{ticket['id']}", json={"status": "pending"},
                                          headers=admin)
        assert (patched.status_code, patched.get_json()["error"]) == (503, "replication_timeout")
        published = replicated_client.post("/api/events", headers={**admin, "Idempotency-Key": "ev-1"}, json={
            "event": "ticket.updated", "data": {"ticket": ticket}})
        assert (published.status_code, published.get_json()["error"]) == (503, "replication_timeout")
    finally:
        replica.start()
        sentinels.wait_for_replicas(1)
    # Both writes were made on the master; the event's key returns the original event.
    assert replicated_client.get(f"/api/tickets/{ticket['id']}", headers=admin).get_json()["ticket"][
        "status"] == "pending"
    replayed = replicated_client.post("/api/events", headers={**admin, "Idempotency-Key": "ev-1"}, json={
        "event": "ticket.updated", "data": {"ticket": ticket}})
    assert replayed.status_code == 200 and replayed.headers["Idempotent-Replayed"] == "true"
