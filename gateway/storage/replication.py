"""Replicated acknowledgements: ``[gateway] durability = "replicated"``.

Redis replicates asynchronously: a master acknowledges a write before any replica has it,
so when the master's machine is lost and Sentinel promotes a replica, the writes of the last
moments may be gone although the gateway answered 2xx for them. With ``durability =
"replicated"`` every acknowledged write is followed, on the same connection, by ``WAIT
<durability_replicas> <timeout_ms>``, and the gateway answers 2xx only once that many
replicas confirmed it; otherwise :class:`ReplicationTimeout`, which the web layer answers with
``503 replication_timeout`` + Retry-After. The write may still exist then (on the master,
perhaps on some replicas): a sender that retries with the same Idempotency-Key gets the
original back, never a duplicate.

``WAIT`` confirms everything the *connection* wrote before it, so it must run on the
connection that wrote: a pooled client cannot do it afterwards. Before the ``WAIT``, a
``PUBLISH`` to :data:`BARRIER_CHANNEL` (propagated to replicas, stores nothing) moves that
connection's replication offset to "now", so the ``WAIT`` also covers what the request
only *read*: the original ticket an idempotent replay hands back was written by another
request, and must be on the replicas too before it is acknowledged again.

Two ways to write with the setting honoured:

* :func:`acknowledged_pipeline` (for any code that writes through redis-py, e.g. the sinks
  API): a MULTI/EXEC pipeline whose ``execute()`` returns only once the replicas confirmed
  it, and raises :class:`ReplicationTimeout` otherwise::

      with acknowledged_pipeline(runtime.redis, runtime.durability) as pipe:
          pipe.hset(key, mapping=fields)          # or a script: script(keys, args, client=pipe)
          pipe.execute()                           # ReplicationTimeout -> 503 replication_timeout

  ``watch()`` / ``multi()`` work as on any redis-py pipeline (optimistic locking).
* :class:`gateway.storage.direct.DirectScript` (the receive path): the ``PUBLISH`` and the
  ``WAIT`` go out in the same network write as the ``EVALSHA``: still one round trip.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, cast

import hiredis
import redis
from redis.client import Pipeline

BARRIER_CHANNEL = "gateway:replication-barrier"
"""The channel the barrier ``PUBLISH`` goes to (nobody listens; it only moves the offset)."""

__all__ = ["BARRIER_CHANNEL", "LOCAL", "Durability", "ReplicatedPipeline", "ReplicationTimeout",
           "acknowledged_pipeline", "confirm"]


@dataclasses.dataclass(frozen=True)
class Durability:
    """When a write counts as acknowledged: ``replicas`` 0 = once the master has it (``local``);
    more = once that many replicas confirmed it within ``timeout_ms`` (``replicated``)."""

    replicas: int = 0
    timeout_ms: int = 1000

    @property
    def replicated(self) -> bool:
        return self.replicas > 0

    @property
    def mode(self) -> str:
        """The setting's value: ``local`` or ``replicated``."""
        return "replicated" if self.replicated else "local"

    @functools.cached_property
    def packed_barrier(self) -> bytes:
        """``PUBLISH`` + ``WAIT``, packed, to send right behind a write (two replies)."""
        commands: list[tuple[Any, ...]] = [("PUBLISH", BARRIER_CHANNEL, ""), ("WAIT", self.replicas, self.timeout_ms)]
        return b"".join(hiredis.pack_command(cast(Any, command)) for command in commands)

    def check(self, acked: int, result: Any = None) -> None:
        """Raise :class:`ReplicationTimeout` when ``acked`` (WAIT's answer) falls short."""
        if acked < self.replicas:
            raise ReplicationTimeout(self, acked, result)


LOCAL = Durability()
"""``durability = "local"``: acknowledged once the master has it (no WAIT)."""


class ReplicationTimeout(redis.RedisError):
    """A write reached the master, but fewer than ``durability.replicas`` replicas confirmed
    it in time (``acked`` did; None when the answer itself was lost). The write may exist
    or not: a failover now could lose it. ``result`` is what the write answered, when known.

    Deliberately not a :class:`redis.ConnectionError`: redis-py retries those by sending the
    command again, and this write must not run twice."""

    def __init__(self, durability: Durability, acked: int | None, result: Any = None) -> None:
        self.durability = durability
        self.acked = acked
        self.result = result
        seen = "the answer was lost" if acked is None else f"{acked} did"
        super().__init__(f"{durability.replicas} replica(s) did not confirm the write within "
                         f"{durability.timeout_ms} ms ({seen})")


def confirm(connection: Any, durability: Durability, result: Any = None) -> None:
    """On ``connection`` (a redis-py connection that has just written): ``PUBLISH`` + ``WAIT``
    in one round trip; raise :class:`ReplicationTimeout` unless enough replicas confirmed.
    A lost connection also raises it: the write happened, its replication is unknown."""
    if not durability.replicated:
        return
    try:
        connection.send_packed_command([durability.packed_barrier], check_health=False)
        connection.read_response()
        acked = int(connection.read_response())
    except (OSError, redis.RedisError) as exc:
        connection.disconnect()
        raise ReplicationTimeout(durability, None, result) from exc
    durability.check(acked, result)


class ReplicatedPipeline(Pipeline):
    """A MULTI/EXEC pipeline whose EXEC is confirmed by replicas (see the module docstring).
    Build it with :func:`acknowledged_pipeline`."""

    durability: Durability = LOCAL

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> list[Any]:
        # The barrier joins the transaction (one more queued command, same round trip); the
        # WAIT must come after EXEC: inside MULTI, Redis answers WAIT at once without waiting.
        barrier: tuple[tuple[Any, ...], dict[str, Any]] = (("PUBLISH", BARRIER_CHANNEL, ""), {})
        response = super()._execute_transaction(connection, [*commands, barrier], raise_on_error)
        response = response[:-1]
        try:
            connection.send_command("WAIT", self.durability.replicas, self.durability.timeout_ms)
            acked = int(connection.read_response())
        except (OSError, redis.RedisError) as exc:
            # Not re-raised as a connection error: redis-py would run the transaction again.
            connection.disconnect()
            raise ReplicationTimeout(self.durability, None, response) from exc
        self.durability.check(acked, response)
        return response


def acknowledged_pipeline(client: redis.Redis, durability: Durability) -> Pipeline:
    """A MULTI/EXEC pipeline on ``client`` for a write the gateway acknowledges to someone:
    with ``durability`` replicated, ``execute()`` returns only once the replicas confirmed
    it, else raises :class:`ReplicationTimeout` (answer ``503 replication_timeout``); with
    ``local``, a plain ``client.pipeline(transaction=True)``."""
    if not durability.replicated:
        return client.pipeline(transaction=True)
    pipe = ReplicatedPipeline(client.connection_pool, client.response_callbacks, True, None)
    pipe.durability = durability
    return pipe
