"""Runtime: everything a web or worker process builds once at start-up.

Settings, plugins, the Redis client, the rq queue, one Sink object per configured sink,
the subscriber lookup table and the publisher. The Flask app keeps it in
``app.extensions["gateway"]``; the worker and the CLI build their own.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from gateway.admin_token import ensure_admin_token
from gateway.config import Settings, SinkConfig, load_config
from gateway.keys import Keys
from gateway.plugins import Plugins, load_plugins
from gateway.sinks import Sink, SinkContext
from gateway.store import EmbeddedRedis, connect, redis_url_for


class Runtime:
    """The gateway's shared state for one process."""

    def __init__(self, settings: Settings, plugins: Plugins, redis_url: str,
                 embedded: EmbeddedRedis | None = None) -> None:
        self.settings = settings
        self.plugins = plugins
        self.redis_url = redis_url
        self.embedded = embedded
        self.redis: redis.Redis = connect(redis_url)
        self.keys = Keys(settings.key_prefix)
        self.queue = Queue(settings.queue, connection=self.redis, serializer=JSONSerializer)
        self.context = SinkContext(redis=self.redis, key_prefix=settings.key_prefix, public_url=settings.public_url)
        self.sinks: dict[str, Sink] = {}
        for sink_config in settings.sinks:
            sink_type = plugins.sink_types[sink_config.type]
            self.sinks[sink_config.name] = sink_type.factory(sink_config.name, sink_config.options, self.context)
        # More than one drainer per sink lets several worker processes share one busy sink.
        self.max_drainers = int(os.environ.get("GATEWAY_MAX_DRAINERS", "2"))
        from gateway.bus import Publisher

        self.publisher = Publisher(self)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, start_embedded: bool = True,
                    extra_plugins: list[Any] | None = None) -> Runtime:
        """Load plugins and config, find (or start) Redis, build the runtime."""
        plugins = load_plugins(extra=extra_plugins)
        settings = load_config(path, plugins)
        return cls.from_settings(settings, plugins, start_embedded=start_embedded)

    @classmethod
    def from_settings(cls, settings: Settings, plugins: Plugins, start_embedded: bool = True) -> Runtime:
        """Build from already-validated settings. Without a configured ``admin_token`` the
        one generated under the data directory is used (see :mod:`gateway.admin_token`)."""
        settings = ensure_admin_token(settings)
        url, embedded = redis_url_for(settings.redis_url, settings.data_dir)
        if embedded is not None and start_embedded:
            embedded.start()
        return cls(settings, plugins, url, embedded)

    @functools.cached_property
    def _subscribers(self) -> Mapping[str, tuple[SinkConfig, ...]]:
        table: dict[str, tuple[SinkConfig, ...]] = {}
        for name in self.plugins.catalog.names():
            table[name] = tuple(s for s in self.settings.sinks if s.enabled and s.subscribes(name))
        return table

    def subscribers(self, event_name: str) -> tuple[SinkConfig, ...]:
        """Enabled sinks subscribed to ``event_name`` (a lookup table built once)."""
        return self._subscribers.get(event_name, ())

    def sink_config(self, name: str) -> SinkConfig:
        """The configured sink called ``name``; KeyError when there is none."""
        return self.settings.sink(name)
