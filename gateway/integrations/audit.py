"""The audit log: who changed which integration, when, and what changed.

One entry per admin action (create, update, enable, disable, delete, rotate, pause,
resume, replay), newest first, kept ``gateway.audit_retention_days`` (a Redis stream trimmed by
time as entries are added). An entry of a change is written in the same MULTI/EXEC as the
change itself, so the log never tells of a change that did not happen, nor misses one.

Secret values never appear: a changed secret, a secret option (a Slack webhook URL, static
headers, API keys) shows as ``[hidden]`` on both sides; other URLs are masked as the API
shows them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis

from gateway.digits import is_ascii_digits
from gateway.events import iso_from_ms
from gateway.redact import HIDDEN, public_value
from gateway.storage.scripts import as_text

if TYPE_CHECKING:  # pragma: no cover
    from redis.client import Pipeline

    from gateway.runtime import Runtime

ACTIONS = ("create", "update", "enable", "disable", "delete", "rotate", "pause", "resume", "replay")
CLI_ACTOR = "cli"
"""The actor of changes made with the ``gateway`` command (on the machine, no token)."""
MAX_LIMIT = 500
SECRET_KEYS = frozenset({"secret", "secrets"})


def shown(key: str, value: Any, secret_options: Iterable[str]) -> Any:
    """A sink table's value as the audit log may show it."""
    if value is None:
        return None
    if key in SECRET_KEYS:
        return HIDDEN
    return public_value(key, value, key in set(secret_options))


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
            secret_options: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{key: {"from", "to"}}`` for every key of a sink table whose value differs (compared
    as stored, shown as :func:`shown` allows: a rotated secret is a change from
    ``[hidden]`` to ``[hidden]``)."""
    old, new = dict(before or {}), dict(after or {})
    hidden = set(secret_options)
    return {key: {"from": shown(key, old.get(key), hidden), "to": shown(key, new.get(key), hidden)}
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}


def entry(actor: str, action: str, target: str, change: Mapping[str, Any], now_ms: int | None = None
          ) -> dict[str, Any]:
    """An audit entry as stored (its id is the stream's)."""
    at = now_ms if now_ms is not None else int(time.time() * 1000)
    return {"at": iso_from_ms(str(at)), "actor": actor, "action": action, "target": target, "changes": dict(change)}


def append(pipe: Pipeline | redis.Redis, runtime: Runtime, doc: Mapping[str, Any]) -> None:
    """Queue the XADD of ``doc`` on ``pipe`` (the change's MULTI), trimming entries older
    than the retention as it goes."""
    oldest_ms = int(time.time() * 1000) - int(runtime.settings.audit_retention_days * 86_400_000)
    pipe.xadd(runtime.keys.audit, {"e": json.dumps(doc, separators=(",", ":"), ensure_ascii=False)},
              minid=f"{max(oldest_ms, 0)}-0", approximate=True)


def record(runtime: Runtime, actor: str, action: str, target: str, change: Mapping[str, Any] | None = None
           ) -> None:
    """Write one entry now, for actions whose change is written elsewhere (resume, replay)."""
    append(runtime.redis, runtime, entry(actor, action, target, change or {}))


def read(runtime: Runtime, limit: int = 50, before: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Entries newest first, at most ``limit``, older than the entry id ``before``; with the
    cursor of the next page (None on the last). ValueError for a cursor that is not an id."""
    if before is not None and not _is_stream_id(before):
        raise ValueError(before)
    high = f"({before}" if before else "+"
    rows = runtime.redis.xrevrange(runtime.keys.audit, max=high, min="-", count=limit + 1) or []
    found = []
    for raw_id, fields in rows[:limit]:
        stored = fields or {}
        doc = json.loads(as_text(stored.get(b"e") or stored.get("e") or "{}"))
        found.append({"id": as_text(raw_id), **doc})
    return found, (found[-1]["id"] if len(rows) > limit and found else None)


def _is_stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return is_ascii_digits(ms) and is_ascii_digits(seq) and len(text) <= 41

