"""The integrations scenario's set-up (bench/integrations.py): the sinks it creates through
the store are the ones a process started afterwards sees."""

from __future__ import annotations

from pathlib import Path

from bench.integrations import StoreFiller, fill_store
from bench.stack import Stack
from gateway.config import parse_config
from gateway.integrations import audit
from gateway.plugins import load_plugins
from gateway.publish.plugin_services import provide
from gateway.runtime import Runtime


def test_sinks_filled_without_rebuilding_the_view_are_all_stored_and_audited(tmp_path: Path) -> None:
    plugins = load_plugins()
    with Stack(tmp_path) as stack:
        doc = {"gateway": {"redis_url": stack.redis_url, "data_dir": str(tmp_path / "data"), "key_prefix": "t:",
                           "admin_token": "bench-admin-token-0123456789abcdef0123"},
               "delivery": {"allow_private_networks": True}}
        settings = parse_config(doc, plugins)
        filler = provide(StoreFiller.from_settings(settings, plugins, start_embedded=False))
        fill_store(filler, 5, 2)
        fresh = provide(Runtime.from_settings(settings, plugins, start_embedded=False))
        assert [c.name for c in fresh.sink_configs()] == [f"sink-{i:03d}" for i in range(5)]
        assert [c.name for c in fresh.subscribers("ticket.created")] == ["sink-000", "sink-001"]
        assert [c.name for c in fresh.subscribers("ticket.resolved")] == ["sink-002", "sink-003", "sink-004"]
        assert fresh.integrations.version == "5"
        entries, _ = audit.read(fresh)
        assert [e["action"] for e in entries] == ["create"] * 5
        fresh.redis.close()
