"""Zapier REST Hook subscriptions, kept in Redis.

Per zapier sink: a hash per subscription (``zapier:<sink>:hook:<id>``), a set of ids per
event (``zapier:<sink>:event:<name>``, read on every publish) and a set of all ids
(``zapier:<sink>:hooks``, for listing). Writes go in one MULTI/EXEC so a subscription is
never half there.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from datetime import UTC, datetime
from typing import Any, cast

from gateway import SinkContext, iso_z

MAX_SUBSCRIPTIONS = 1000


@dataclasses.dataclass(frozen=True)
class Subscription:
    """One Zap listening for one event; ``key_label`` is the label of the API key that
    subscribed it (None for an unlabelled key), so an admin can tell Zaps apart."""

    id: str
    sink: str
    event: str
    target_url: str
    created_at: str
    key_label: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API's form of a subscription."""
        return {"id": self.id, "target_url": self.target_url, "event": self.event, "created_at": self.created_at,
                "sink": self.sink, "key_label": self.key_label}

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Subscription:
        """From the stored hash (subscriptions stored before labels existed have none)."""
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(id=fields["id"], sink=fields["sink"], event=fields["event"], target_url=fields["target_url"],
                   created_at=fields["created_at"], key_label=fields.get("key_label") or None)


class Subscriptions:
    """The subscriptions of one zapier sink."""

    def __init__(self, context: SinkContext, sink: str) -> None:
        self.context = context
        self.sink = sink
        self.redis = context.redis

    def _hook_key(self, sub_id: str) -> str:
        return self.context.key("zapier", self.sink, "hook", sub_id)

    def _event_key(self, event: str) -> str:
        return self.context.key("zapier", self.sink, "event", event)

    @property
    def _all_key(self) -> str:
        return self.context.key("zapier", self.sink, "hooks")

    def count(self) -> int:
        """How many subscriptions the sink has."""
        return int(self.redis.scard(self._all_key))

    def create(self, event: str, target_url: str, key_label: str | None = None) -> Subscription:
        """Store a new subscription and return it."""
        # The id starts with the creation time in ns (16 hex digits), then 64 random bits:
        # "oldest first" (created_at, id) holds for subscriptions made in the same millisecond.
        sub = Subscription(id=f"sub_{time.time_ns():016x}{secrets.token_hex(8)}", sink=self.sink, event=event,
                           target_url=target_url, created_at=iso_z(datetime.now(UTC)), key_label=key_label)
        stored = {**dataclasses.asdict(sub), "key_label": key_label or ""}
        with self.redis.pipeline(transaction=True) as pipe:
            # redis-py types the mapping's keys as an invariant union: a dict of str cannot match it.
            pipe.hset(self._hook_key(sub.id), mapping=stored)  # type: ignore[arg-type]
            pipe.sadd(self._event_key(event), sub.id)
            pipe.sadd(self._all_key, sub.id)
            pipe.execute()
        return sub

    def get(self, sub_id: str) -> Subscription | None:
        """The subscription with this id, or None."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self._hook_key(sub_id)))
        return Subscription.from_hash(raw) if raw else None

    def delete(self, sub_id: str) -> bool:
        """Remove a subscription; False when there was none."""
        event = cast(bytes | None, self.redis.hget(self._hook_key(sub_id), "event"))
        if event is None:
            return False
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._hook_key(sub_id))
            pipe.srem(self._event_key(event.decode()), sub_id)
            pipe.srem(self._all_key, sub_id)
            removed = pipe.execute()[0]
        return bool(removed)

    def _load(self, ids: list[bytes]) -> list[Subscription]:
        with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(self._hook_key(sub_id.decode()))
            rows = pipe.execute()
        return sorted((Subscription.from_hash(row) for row in rows if row), key=lambda s: (s.created_at, s.id))

    def all(self) -> list[Subscription]:
        """Every subscription of the sink, oldest first."""
        return self._load(list(cast(set[bytes], self.redis.smembers(self._all_key))))

    def for_event(self, event: str) -> list[Subscription]:
        """The subscriptions an event fans out to, oldest first."""
        ids = list(cast(set[bytes], self.redis.smembers(self._event_key(event))))
        return self._load(ids) if ids else []
