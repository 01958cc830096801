"""``gateway sinks export``: the sinks stored through the API as ``[[sinks]]`` TOML, for a
deployment that wants them in its config file. No secret is written: each secret value
(signing secrets and the options the sink type declares secret) becomes an ``${ENV}``
placeholder, and the header lists the variables to set."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import tomli_w

from gateway.config import StoredSink

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime


def env_name(*parts: str) -> str:
    """``crm``, ``headers``, ``X-Token`` -> ``CRM_HEADERS_X_TOKEN``."""
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _placeholder(sink: str, key: str, value: Any, names: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _placeholder(sink, f"{key}_{k}", v, names) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_placeholder(sink, f"{key}_{i}", v, names) for i, v in enumerate(value, 1)]
    name = env_name(sink, key)
    names.append(name)
    return "${" + name + "}"


def export_toml(runtime: Runtime) -> str:
    """Every stored sink as a ``[[sinks]]`` table (creation order), secrets as ``${ENV}``."""
    stored = runtime.redis.hgetall(runtime.keys.integrations)
    records = sorted(((k.decode() if isinstance(k, bytes) else k, StoredSink.from_json(v)) for k, v in stored.items()),
                     key=lambda item: (item[1].created_at_ms, item[0]))
    tables = []
    names: list[str] = []
    for name, record in records:
        sink_type = runtime.plugins.sink_types.get(str(record.table.get("type")))
        secret_keys = {"secret", "secrets"} | set(sink_type.secret_options if sink_type else ())
        tables.append({key: (_placeholder(name, key, value, names) if key in secret_keys else value)
                       for key, value in record.table.items()})
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [f"# Sinks stored through the sinks API, exported {stamp} by `gateway sinks export`.",
              "# Secrets are not in this file. Set these environment variables to the values shown when",
              "# each sink was created or its secret last rotated:"]
    header += [f"#   {name}" for name in names] or ["#   (none)"]
    body = tomli_w.dumps({"sinks": tables}) if tables else ""
    return "\n".join(header) + "\n\n" + body
