"""Every environment variable the gateway reads, in one place.

Configuration proper lives in the TOML file (:mod:`gateway.config`); these are the few
knobs that must reach a process before it has read that file, or that ``gateway run`` hands
to the processes it starts.
"""

from __future__ import annotations

import os

from gateway.digits import is_ascii_digits

CONFIG = "GATEWAY_CONFIG"
"""The config file (when ``--config`` is not given)."""
REDIS_URL = "GATEWAY_REDIS_URL"
"""Where Redis is, when the config names none (``gateway run`` sets it for its children)."""
PLUGINS = "GATEWAY_PLUGINS"
"""Comma-separated entry-point names: only these third-party plugins load (for bisecting)."""
LOG_FORMAT = "GATEWAY_LOG_FORMAT"
"""``text`` or ``json``."""
LOG_LEVEL = "GATEWAY_LOG_LEVEL"
"""A logging level name, e.g. ``DEBUG``."""
MAX_DRAINERS = "GATEWAY_MAX_DRAINERS"
"""Most drainers working one sink at once across all workers (default 2)."""
HOST, PORT, WEB_WORKERS, WORKERS = "GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_WEB_WORKERS", "GATEWAY_WORKERS"
"""Defaults for ``gateway run`` / ``gateway web`` options of the same names."""

DEFAULT_MAX_DRAINERS = 2


def config_file() -> str | None:
    """``$GATEWAY_CONFIG``, if set."""
    return os.environ.get(CONFIG) or None


def redis_url() -> str | None:
    """``$GATEWAY_REDIS_URL``, if set."""
    return os.environ.get(REDIS_URL) or None


def plugin_allow_list() -> set[str] | None:
    """The entry-point names ``$GATEWAY_PLUGINS`` allows; None when it is not set."""
    value = os.environ.get(PLUGINS)
    if not value:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def log_format(default: str = "text") -> str:
    """``$GATEWAY_LOG_FORMAT``, else ``default``."""
    return os.environ.get(LOG_FORMAT) or default


def log_level(default: str = "INFO") -> str:
    """``$GATEWAY_LOG_LEVEL``, else ``default``."""
    return os.environ.get(LOG_LEVEL) or default


def max_drainers() -> int:
    """``$GATEWAY_MAX_DRAINERS`` (at least 1), else 2: more than one drainer per sink lets
    several worker processes share one busy sink."""
    value = os.environ.get(MAX_DRAINERS)
    return max(1, int(value)) if value and is_ascii_digits(value.strip()) else DEFAULT_MAX_DRAINERS
