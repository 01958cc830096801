"""The receive endpoint's secret, set and rotated through the API: the guide's "if you've
configured a webhook secret in Settings → Integrations".

``gateway.secret`` in the config file still works and then wins (``source: config``;
rotating it here is refused: change the file). Otherwise ``rotate`` sets a new generated
secret (shown once); the previous one keeps being accepted on ``POST
/api/webhooks/receive`` for ``gateway.rotation_overlap`` seconds, so senders can switch
without a window of refused requests. The secret, its version bump and the audit entry
commit together; every web process checks signatures with it from the next request on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import redis

from gateway.config import StoredReceiveSecret
from gateway.errors import ApiError
from gateway.events import iso_from_ms
from gateway.integrations import audit
from gateway.integrations.secrets import new_secret
from gateway.integrations.store import MAX_TRIES
from gateway.storage.replication import acknowledged_pipeline

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

TARGET = "receive_secret"


def status(runtime: Runtime) -> dict[str, Any]:
    """Where the receive secret comes from and since when; never its value."""
    view = runtime.refresh()
    now = time.time()
    retiring = [until for _, until in view.receive_retiring if until > now]
    return {"source": view.receive_source, "signed": view.receive_secret is not None,
            "set_at": iso_from_ms(str(view.receive_set_at_ms)) if view.receive_set_at_ms else None,
            "previous_valid_until": iso_from_ms(str(int(max(retiring) * 1000))) if retiring else None}


def rotate(runtime: Runtime, actor: str, overlap: int | None = None) -> tuple[str, float | None]:
    """Set a new generated receive secret; the previous one (if any) stays accepted for
    ``overlap`` seconds (default ``gateway.rotation_overlap``; 0: refused at once).
    Returns the new secret (shown once) and when the previous one stops (Unix seconds).
    409 ``receive_secret_managed_by_config`` when ``gateway.secret`` is set in the file."""
    if runtime.settings.secret is not None:
        raise ApiError(409, "receive_secret_managed_by_config", "The receive secret is gateway.secret in the "
                       "config file, which is read-only at runtime: change it there and restart.")
    seconds = runtime.settings.rotation_overlap if overlap is None else overlap
    secret = new_secret()
    keys = runtime.keys
    for _ in range(MAX_TRIES):
        # Acknowledged per `durability` (the replicas confirm it before EXEC returns).
        with acknowledged_pipeline(runtime.redis, runtime.durability) as pipe:
            try:
                pipe.watch(keys.receive_secret)
                raw = pipe.get(keys.receive_secret)
                current = StoredReceiveSecret.from_json(raw) if raw is not None else None
                now = time.time()
                until = now + seconds if current is not None and seconds > 0 else None
                # With no overlap, every previous secret stops at once (one that leaked).
                retiring = [(s, u) for s, u in (current.retiring if current else ()) if u > now and seconds > 0]
                if until is not None and current is not None:
                    retiring.insert(0, (current.secret, until))
                pipe.multi()
                pipe.set(keys.receive_secret, StoredReceiveSecret(secret, int(now * 1000), tuple(retiring)).to_json())
                pipe.incr(keys.integrations_version)
                shown_until = iso_from_ms(str(int(until * 1000))) if until else None
                audit.append(pipe, runtime, audit.entry(actor, "rotate", TARGET, {
                    "secret": {"from": audit.HIDDEN if current else None, "to": audit.HIDDEN},
                    "previous_secret_valid_until": {"from": None, "to": shown_until}}))
                pipe.execute()
            except redis.WatchError:
                continue
        runtime.reload()
        return secret, until
    raise redis.WatchError(f"gave up after {MAX_TRIES} conflicting concurrent rotations")
