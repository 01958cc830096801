"""The embedded Redis: which appendfsync it runs with, chosen by ``[gateway] embedded_fsync``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from support.plugins import EnvelopeSinkPlugin, PlainSinkPlugin

from gateway.config import ConfigError, parse_config
from gateway.plugins import load_plugins
from gateway.storage.connection import redis_url_for
from gateway.storage.embedded import EmbeddedRedis


def appendfsync_of(server: EmbeddedRedis) -> str:
    with redis.Redis.from_url(server.url, decode_responses=True) as client:
        return str(client.config_get("appendfsync")["appendfsync"])


def test_the_embedded_redis_fsyncs_every_write_unless_told_otherwise(tmp_path: Path) -> None:
    # `always` by default: with everysec, Redis 6.2 may postpone the write itself while a
    # background fsync runs and still reply, so a killed server could lose acknowledged writes.
    url, embedded = redis_url_for(None, str(tmp_path / "default"))
    assert embedded is not None and url == embedded.url
    embedded.start()
    try:
        assert appendfsync_of(embedded) == "always"
    finally:
        embedded.stop()
    _, faster = redis_url_for(None, str(tmp_path / "faster"), "everysec")
    assert faster is not None
    faster.start()
    try:
        assert appendfsync_of(faster) == "everysec"
    finally:
        faster.stop()


def test_embedded_fsync_is_validated_like_every_other_option() -> None:
    plugins: Any = load_plugins(extra=[EnvelopeSinkPlugin()])
    assert parse_config({"gateway": {"embedded_fsync": "everysec"}}, plugins, env={}).embedded_fsync == "everysec"
    assert parse_config({}, plugins, env={}).embedded_fsync == "always"
    with pytest.raises(ConfigError) as caught:
        parse_config({"gateway": {"embedded_fsync": "no"}}, plugins, env={})
    assert list(caught.value.errors) == ["gateway.embedded_fsync"]
    with pytest.raises(ValueError, match="fsync must be one of"):
        EmbeddedRedis("unused", fsync="no")


def test_a_delivery_to_a_long_url_is_stored_as_a_compact_hash(tmp_path: Path, make_runtime: Any) -> None:
    # The delivery hash holds the target's JSON; with Redis' default 64-byte limit any real
    # URL made it a hashtable, ~3x the bytes per delivery. Shown unchanged through the log.
    from support.configs import engine_config, sink_table
    from support.delivery import publish_tickets, shown

    url = "https://hooks.example.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        runtime = make_runtime(engine_config(server.url, tmp_path, [sink_table("crm", url)]),
                               plugins=[PlainSinkPlugin()])
        [delivery_id] = publish_tickets(runtime)
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            key = f"gw:delivery:{delivery_id}"
            assert len(client.hget(key, "target") or "") > 64
            assert client.object("encoding", key) in ("ziplist", "listpack")
            stored_target = client.hget(key, "target")
        # Nothing changes for a reader: the URL whole in Redis, shown as the API shows URLs.
        assert url in (stored_target or "")
        seen = shown(runtime, delivery_id)
        assert (seen["sink"], seen["status"], seen["target"]["url"]) == (
            "crm", "pending", "https://hooks.example.com/services/…")
    finally:
        server.stop()
