"""Gateway configurations for tests: dicts as the TOML would parse, and TOML files for
processes (:func:`write_config`, the one in :mod:`gateway.testing`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.testing import write_config

__all__ = ["OUTAGE_ADMIN_TOKEN", "engine_config", "outage_config", "sink_table", "write_config"]

OUTAGE_ADMIN_TOKEN = "reliability-admin-token-01234567"


def sink_table(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A ``[[sinks]]`` table of the ``plain`` type (:mod:`support.plugins`) for every event."""
    return {"name": name, "type": "plain", "url": url, "events": ["*"], **extra}


def engine_config(redis_url: str, tmp_path: Path, sinks: list[dict[str, Any]], **delivery: Any) -> dict[str, Any]:
    """The delivery engine tests' config: private networks allowed, no retry jitter."""
    return {"gateway": {"redis_url": redis_url, "data_dir": str(tmp_path / "data"),
                        "admin_token": "admin-token-1-0123456789abcdef01"},
            "delivery": {"allow_private_networks": True, "retry_jitter": 0, **delivery},
            "sinks": sinks}


def outage_config(redis_url: str, data_dir: Path, sink_url: str, **delivery: Any) -> dict[str, Any]:
    """For tests that take things down: one generic webhook sink ``rec`` on ``ticket.created``,
    private networks allowed (the sink is on 127.0.0.1), short timeouts and retries so a
    test sees several rounds."""
    return {
        "gateway": {"redis_url": redis_url, "data_dir": str(data_dir), "admin_token": OUTAGE_ADMIN_TOKEN},
        "delivery": {
            "allow_private_networks": True,
            "timeout": 2,
            "retry_schedule": [1, 1, 2, 2, 3, 3, 5, 5, 5, 5],
            "retry_jitter": 0.2,
            "failure_threshold": 1000,
            **delivery,
        },
        "sinks": [{"name": "rec", "type": "generic_webhook", "url": sink_url, "events": ["ticket.created"]}],
    }
