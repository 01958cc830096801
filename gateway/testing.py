"""pytest fixtures for the gateway's own tests and for plugin authors (a pytest plugin,
loaded automatically once the gateway is installed).

* ``redis_url``: a real Redis for the session: ``REDIS_URL`` when set (its database is
  flushed before each test, so point it at a scratch index), else an embedded server.
* ``redis_client``: a client on it, flushed before each test.
* ``make_runtime(config_dict, plugins=[...])``: a :class:`gateway.runtime.Runtime` from a
  config given as a dict (as the TOML would parse), on the test Redis.
* ``make_client(config_dict)``: a Flask test client around such a runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib

from gateway.store import EmbeddedRedis, connect


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis for the whole test session."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    """A client on the test Redis, whose database is flushed before each test."""
    client = connect(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_runtime(redis_client: redis_lib.Redis, redis_url: str, tmp_path: Any) -> Callable[..., Any]:
    """Build a Runtime from a config dict on the test Redis."""
    from gateway.config import parse_config
    from gateway.plugins import load_plugins
    from gateway.runtime import Runtime

    def build(config: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> Runtime:
        config = dict(config or {})
        gateway_section = dict(config.get("gateway") or {})
        gateway_section.setdefault("redis_url", redis_url)
        gateway_section.setdefault("data_dir", str(tmp_path / "data"))
        config["gateway"] = gateway_section
        loaded = load_plugins(extra=plugins)
        return Runtime.from_settings(parse_config(config, loaded), loaded)

    return build


@pytest.fixture
def make_client(make_runtime: Callable[..., Any]) -> Callable[..., Any]:
    """A Flask test client for a config dict."""
    from gateway.app import create_app

    def build(config: dict[str, Any] | None = None, plugins: list[Any] | None = None) -> Any:
        app = create_app(make_runtime(config, plugins))
        app.testing = True
        return app.test_client()

    return build
