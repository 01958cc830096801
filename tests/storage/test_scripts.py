"""gateway.storage.scripts: the Python side of the Lua scripts reads each script's reply
slot by slot and hands the scripts the engine's constants (the drainer lease, the backlog
one drainer is expected to keep up with, the retention). Each of those is checked here as
the engine relies on it, on a real Redis, with the clock the scripts are given held still
so that every lease and wait is an exact number."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from support.delivery import drain_queued, plain_runtime, publish_tickets, shown
from support.plugins import PlainSinkPlugin
from support.servers import Answer, SinkServer

from gateway.events import Event, utc_now
from gateway.publish.publisher import publish, publish_args
from gateway.storage import scripts

UNUSED_URL = "http://127.0.0.1:9/hook"  # nothing is delivered in these tests unless a server is started


@pytest.fixture
def frozen_now(monkeypatch: pytest.MonkeyPatch) -> int:
    """The milliseconds every Scripts call passes to its script, held at one value."""
    now = scripts.now_ms()
    monkeypatch.setattr(scripts, "now_ms", lambda: now)
    return now


@pytest.fixture
def runtime(make_runtime: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("GATEWAY_MAX_DRAINERS", raising=False)  # the default: two drainers per sink
    return plain_runtime(make_runtime, UNUSED_URL)


def claim(runtime: Any, n: int, max_in_flight: int, rate_interval_ms: int = 0,
          token: str = "drainer-1") -> scripts.ClaimResult:
    return runtime.scripts.claim("hook", token, n, max_in_flight, inflight_lease_ms=60_000,
                                 rate_interval_ms=rate_interval_ms)


# -- claim -------------------------------------------------------------------------------------

@pytest.mark.usefixtures("frozen_now")
def test_a_claim_says_how_many_in_flight_slots_are_left(runtime: Any) -> None:
    ids = publish_tickets(runtime, 2)
    result = claim(runtime, n=10, max_in_flight=3)
    assert (result.status, result.wait_ms, result.room) == ("ok", 0, 1)  # 3 slots, 2 taken
    assert [d.id for d in result.deliveries] == ids
    assert result.config_version == runtime.integrations.version


def test_a_rate_limited_claim_says_how_long_to_wait_and_the_room_left(runtime: Any, frozen_now: int) -> None:
    publish_tickets(runtime, 2)
    first = claim(runtime, n=5, max_in_flight=5, rate_interval_ms=60_000)
    assert (first.status, first.wait_ms, first.room, len(first.deliveries)) == ("ok", 0, 4, 1)
    again = claim(runtime, n=5, max_in_flight=5, rate_interval_ms=60_000)
    # The clock did not move: the next slot is a whole interval away; one of five is in flight.
    assert (again.status, again.wait_ms, again.room, again.deliveries) == ("rate", 60_000, 4, ())


def test_a_claims_lease_on_the_sink_lasts_30_seconds(runtime: Any, frozen_now: int) -> None:
    publish_tickets(runtime, 1)
    claim(runtime, n=1, max_in_flight=1)
    assert runtime.redis.zscore(runtime.keys.drainers("hook"), "drainer-1") == frozen_now + 30_000
    runtime.scripts.touch("hook", "drainer-2")  # a drainer waiting without claiming renews the same way
    assert runtime.redis.zscore(runtime.keys.drainers("hook"), "drainer-2") == frozen_now + 30_000


@pytest.mark.parametrize("broken", ["ready list", "integrations version"])
def test_a_claim_redis_refuses_raises_the_redis_error(runtime: Any, broken: str) -> None:
    # Either of the round trip's two replies can be Redis's error: the caller (the drainer)
    # must get that error, not a claim built from it.
    publish_tickets(runtime, 1)
    key = runtime.keys.ready("hook") if broken == "ready list" else runtime.keys.integrations_version
    runtime.redis.delete(key)
    runtime.redis.hset(key, "not", "a string or a list")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        claim(runtime, n=1, max_in_flight=1)


def stored_hash(runtime: Any, delivery_id: str) -> dict[str, str]:
    """The delivery's hash as Redis holds it, decoded here field by field."""
    raw = runtime.redis.hgetall(runtime.keys.delivery(delivery_id))
    return {name.decode("utf-8"): value.decode("utf-8") for name, value in raw.items()}


def test_a_claimed_delivery_carries_its_hash_as_stored_and_its_event(runtime: Any) -> None:
    [delivery_id] = publish_tickets(runtime, 1)
    stored = stored_hash(runtime, delivery_id)
    event = runtime.redis.get(f"gw:event:{stored['event_id']}").decode("utf-8")

    [claimed] = claim(runtime, n=1, max_in_flight=1).deliveries

    assert claimed == scripts.ClaimedDelivery(delivery_id, stored, event)
    assert {"id", "event_id", "event", "sink", "target", "status", "attempts"} <= claimed.fields.keys()


def test_a_claimed_hash_keeps_a_field_it_does_not_know_and_lacks_one_it_lost(runtime: Any) -> None:
    # Whatever another version of the gateway (or an operator) left in the hash comes back
    # as it is, non-ASCII text included; a field that is not there is not made up.
    [delivery_id] = publish_tickets(runtime, 1)
    key = runtime.keys.delivery(delivery_id)
    runtime.redis.hset(key, mapping={"note": "café ☕ \u202e", "": "empty name", "blank": ""})
    runtime.redis.hdel(key, "target", "next_attempt_at")

    [claimed] = claim(runtime, n=1, max_in_flight=1).deliveries

    assert claimed.fields == stored_hash(runtime, delivery_id)
    assert (claimed.fields["note"], claimed.fields[""], claimed.fields["blank"]) == ("café ☕ \u202e", "empty name", "")
    assert "target" not in claimed.fields and "next_attempt_at" not in claimed.fields


def test_a_delivery_whose_event_expired_is_claimed_without_it(runtime: Any) -> None:
    [delivery_id] = publish_tickets(runtime, 1)
    stored = stored_hash(runtime, delivery_id)
    runtime.redis.delete(f"gw:event:{stored['event_id']}")  # claim.lua answers false for it

    [claimed] = claim(runtime, n=1, max_in_flight=1).deliveries

    assert claimed == scripts.ClaimedDelivery(delivery_id, stored, None)


def test_a_client_that_decodes_replies_itself_claims_the_same(runtime: Any) -> None:
    # Scripts on a client made with decode_responses (its replies are str, not bytes).
    [delivery_id] = publish_tickets(runtime, 1)
    stored = stored_hash(runtime, delivery_id)
    kwargs = runtime.redis.connection_pool.connection_kwargs
    with redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=runtime.redis.connection_pool.connection_class,
            **{**kwargs, "decode_responses": True})) as client:
        decoding = scripts.Scripts(client, "gw:", max_drainers=2, retention_ms=60_000)
        result = decoding.claim("hook", "drainer-1", 1, 1, inflight_lease_ms=60_000, rate_interval_ms=0)

    assert result.deliveries[0].fields == stored
    assert result.config_version == runtime.integrations.version


def test_a_flat_reply_reads_as_text_pairs_whatever_its_values_are() -> None:
    assert scripts.text_pairs([b"a", b"\xc3\xa9", b"b", b""]) == {"a": "é", "b": ""}
    assert scripts.text_pairs(["a", "x", b"n", 7]) == {"a": "x", "n": "7"}
    assert scripts.text_pairs([]) == {}
    with pytest.raises(UnicodeDecodeError):
        scripts.text_pairs([b"a", b"\xff"])


# -- publish -----------------------------------------------------------------------------------

def test_a_publish_routed_by_an_old_integrations_version_gets_the_current_one_and_writes_nothing(
        runtime: Any) -> None:
    event = Event.new("ticket.created", {"ticket": {"id": "t1"}})
    args = publish_args(runtime, event, (), None, None, utc_now(), config_version=runtime.integrations.version)
    newer = str(int(runtime.integrations.version) + 5)
    runtime.redis.set(runtime.keys.integrations_version, newer)  # another process changed a sink
    reply = runtime.scripts.publish(args)
    assert (reply.stale_version, reply.ticket_number, reply.wakes, reply.replayed_ticket_json) == (
        newer, "", (), None)
    assert runtime.redis.exists(f"gw:event:{event.id}") == 0


@pytest.mark.parametrize(("tickets", "drainers"), [(64, 1), (65, 2)])
def test_a_backlog_over_64_per_drainer_wakes_another_drainer(runtime: Any, tickets: int, drainers: int) -> None:
    # No drainer runs: the first publish wakes one; the backlog then grows one by one, and
    # only a 65th ready delivery is more than that drainer is expected to keep up with.
    at = datetime.datetime.now(datetime.UTC)  # one instant: no drainer lease can run out meanwhile
    for i in range(tickets):
        publish(runtime, Event.new("ticket.created", {"ticket": {"id": f"t{i}"}}), now=at)
    assert runtime.redis.llen(runtime.keys.ready("hook")) == tickets
    leases = runtime.redis.zrange(runtime.keys.drainers("hook"), 0, -1, withscores=True)
    assert len(leases) == drainers
    at_ms = int(at.timestamp() * 1000)
    assert {score for _, score in leases} == {at_ms + 30_000}


# -- requeue -----------------------------------------------------------------------------------

def test_a_wake_up_of_two_sinks_whose_drainers_are_gone_reserves_a_drainer_for_each(
        make_runtime: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = make_runtime({"delivery": {"allow_private_networks": True},
                            "sinks": [{"name": name, "type": "plain", "url": UNUSED_URL, "events": ["*"]}
                                      for name in ("first", "second")]}, plugins=[PlainSinkPlugin()])
    publish_tickets(runtime, 1)  # one delivery each; the drainers it woke never run
    later = scripts.now_ms() + 60_000  # their leases have run out
    monkeypatch.setattr(scripts, "now_ms", lambda: later)
    result = runtime.scripts.requeue("retry", wake_sinks=["first", "second"])
    assert sorted(sink for sink, _ in result.wakes) == ["first", "second"]
    for sink, token in result.wakes:
        assert runtime.redis.zscore(runtime.keys.drainers(sink), token) == later + 30_000


# -- cancel ------------------------------------------------------------------------------------

def test_cancel_leaves_a_delivery_being_attempted_to_its_attempt_unless_the_caller_holds_it(
        runtime: Any) -> None:
    [delivery_id] = publish_tickets(runtime, 1)
    claim(runtime, n=1, max_in_flight=1)  # being attempted now
    assert runtime.scripts.cancel("hook", [delivery_id], "sink_deleted", "gone") == 0
    assert shown(runtime, delivery_id)["status"] == "pending"
    assert runtime.redis.zscore(runtime.keys.inflight("hook"), delivery_id) is not None
    # The drainer attempting it cancels it itself (claimed=True): it ends, its slot is given back.
    assert runtime.scripts.cancel("hook", [delivery_id], "sink_deleted", "gone", claimed=True) == 1
    assert shown(runtime, delivery_id)["status"] == "cancelled"
    assert runtime.redis.zcard(runtime.keys.inflight("hook")) == 0


def test_a_cancelled_delivery_expires_with_the_retention(runtime: Any) -> None:
    [delivery_id] = publish_tickets(runtime, 1)
    assert runtime.scripts.cancel("hook", [delivery_id], "sink_deleted", "gone") == 1
    retention_s = int(runtime.settings.retention_days * 86_400)
    ttl = runtime.redis.ttl(runtime.keys.delivery(delivery_id))
    assert retention_s - 60 < ttl <= retention_s


def test_only_the_last_batch_of_a_deleted_sink_drops_its_ready_list_and_state(runtime: Any) -> None:
    # "hook" is not a stored (API) sink: to cancel.lua it is gone, as after a delete.
    first, second = publish_tickets(runtime, 2)
    runtime.redis.hset(runtime.keys.sink_state("hook"), "paused", "1")
    assert runtime.scripts.cancel("hook", [first], "sink_deleted", "gone") == 1
    assert runtime.redis.exists(runtime.keys.ready("hook"), runtime.keys.sink_state("hook")) == 2
    assert runtime.scripts.cancel("hook", [second], "sink_deleted", "gone", last=True) == 1
    # A sink created later under the name starts clean: not paused, nothing queued.
    assert runtime.redis.exists(runtime.keys.ready("hook"), runtime.keys.sink_state("hook")) == 0


# -- failure summaries -------------------------------------------------------------------------

def test_a_failure_summary_carries_the_last_failure_as_the_attempt_described_it(make_runtime: Any) -> None:
    with SinkServer(Answer(400, b"no")) as server:  # a 4xx gives up at once
        runtime = plain_runtime(make_runtime, server.url)
        [delivery_id] = publish_tickets(runtime, 1)
        drain_queued(runtime)
    assert shown(runtime, delivery_id)["status"] == "failed"
    [summary] = runtime.scripts.failure_summaries(window_ms=60_000)
    assert (summary.sink, summary.count) == ("hook", 1)
    assert summary.last["id"] == delivery_id
    assert summary.last["status_code"] == 400
    assert runtime.scripts.failure_summaries(window_ms=60_000) == []  # reported once


def test_one_claim_of_failure_summaries_reports_at_most_100_sinks(runtime: Any) -> None:
    # 101 sinks with a failure not reported yet, as finish.lua notes them: a sweeper's
    # claim takes 100 (a bounded summary pass), the next one the last.
    for i in range(101):
        runtime.redis.hset(runtime.keys.sink_failures(f"sink-{i}"),
                           mapping={"count": 1, "since": 1, "last": json.dumps({"id": f"dlv_{i}"})})
        runtime.redis.sadd(runtime.keys.failing_sinks, f"sink-{i}")
    first = runtime.scripts.failure_summaries(window_ms=60_000)
    second = runtime.scripts.failure_summaries(window_ms=60_000)
    assert (len(first), len(second)) == (100, 1)
    assert {s.sink for s in first + second} == {f"sink-{i}" for i in range(101)}


@pytest.mark.parametrize("last", ["not json", '["a", "list"]', ""])
def test_a_failure_summary_whose_last_failure_is_not_an_object_says_nothing_about_it(runtime: Any, last: str) -> None:
    runtime.redis.hset(runtime.keys.sink_failures("hook"), mapping={"count": 2, "since": 5, "last": last})
    runtime.redis.sadd(runtime.keys.failing_sinks, "hook")
    assert runtime.scripts.failure_summaries(window_ms=60_000) == [scripts.FailureSummary("hook", 2, 5, {})]


def test_a_retention_of_a_fraction_of_a_second_cancels_with_whole_seconds(
        make_runtime: Callable[..., Any]) -> None:
    # 0.0123 day is 1,062.72 s: EXPIRE takes whole seconds only, so the retention is cut to
    # 1,062 before it reaches cancel.lua (sent as 1062.72, Redis would refuse the cancel).
    runtime = plain_runtime(make_runtime, UNUSED_URL, gateway={"retention_days": 0.0123})
    [delivery_id] = publish_tickets(runtime, 1)
    assert runtime.scripts.cancel("hook", [delivery_id], "sink_deleted", "gone") == 1
    assert shown(runtime, delivery_id)["status"] == "cancelled"
    assert 1_000 < runtime.redis.ttl(runtime.keys.delivery(delivery_id)) <= 1_062
