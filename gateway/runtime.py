"""Runtime: everything a web or worker process builds once at start-up.

Settings, plugins, the Redis client, the rq queue, the Lua scripts, one Sink object per
configured sink, the subscriber lookup table and the process's metrics. The Flask app keeps
it in ``app.extensions["gateway"]``; a worker and the CLI build their own.

Sinks come from two places: the config file (fixed for the life of the process) and the
sinks API's store in Redis, which admins change while every process runs. The process
keeps one :class:`Integrations` view of both, at one configuration *version* (a counter in
Redis that every change bumps in the same transaction). It never polls: publish.lua refuses
a publish routed by an older version (the caller reloads and publishes again), a worker
reads the version in the same round trip as each claim, and the admin API and the sweeper
check it before they look. So whatever was published or attempted after a change was
acknowledged saw that change, in every process, with no extra round trip on the hot paths.

Layers above keep their per-process state here too, in :attr:`Runtime.extensions` under
their own key, through an accessor of their own (e.g. the delivery engine of a worker
process, :func:`gateway.delivery.jobs.engine_of`): the runtime knows nothing of them.

The delivery engine and the integration store report what happened to a sink (a circuit
opened, a sink paused, failures to summarise, a configuration changed) through
:attr:`Runtime.reporter`, a :class:`SystemEventReporter`. The publish layer, above them,
publishes those reports as system events; every process that builds a runtime installs it
(:func:`gateway.publish.plugin_services.provide`), so the lower layers never import the
publisher.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from gateway import environment
from gateway.admin_token import ensure_admin_token
from gateway.config import ConfigError, Settings, SinkConfig, StoredReceiveSecret, StoredSink, load_config
from gateway.metrics import Metrics
from gateway.plugins import Plugins, load_plugins
from gateway.redact import register_secrets, sink_secret_values
from gateway.sinks import Sink, SinkContext
from gateway.storage.connection import SOCKET_TIMEOUT_S, RedisUrlError, check_redis_url, connect, redis_url_for
from gateway.storage.embedded import EmbeddedRedis
from gateway.storage.keys import Keys
from gateway.storage.replication import Durability
from gateway.storage.scripts import Finished, Scripts, as_text

log = logging.getLogger("gateway.runtime")


@dataclasses.dataclass(frozen=True)
class Integrations:
    """Every sink (the file's, then the API's in creation order) and the receive secret, as
    of one configuration ``version``. Immutable: a change builds a new one."""

    version: str
    configs: Mapping[str, SinkConfig]
    sinks: Mapping[str, Sink]
    subscribers: Mapping[str, tuple[SinkConfig, ...]]
    deleted: frozenset[str] = frozenset()
    """Sinks deleted through the API: their deliveries still met are cancelled."""
    invalid: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Stored sinks left out, and why (their plugin is gone, a file sink took the name...)."""
    receive_secret: str | None = None
    receive_source: str | None = None
    """Where the receive secret comes from: ``config`` (gateway.secret), ``api``, or None."""
    receive_set_at_ms: int | None = None
    receive_retiring: tuple[tuple[str, float], ...] = ()

    def receive_secrets(self, now: float | None = None) -> tuple[str, ...]:
        """Secrets that sign an accepted request now: the current one, then those a rotation
        keeps accepting until their time. Empty: unsigned requests are accepted."""
        if self.receive_secret is None:
            return ()
        at = time.time() if now is None else now
        return (self.receive_secret, *(value for value, until in self.receive_retiring if until > at))

class _CurrentSinks(Mapping[str, Sink]):
    """The runtime's current view's sinks as one mapping that follows every reload (what
    the :class:`SinkContext` hands plugins: sinks created, changed or deleted through the
    sinks API included)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def __getitem__(self, name: str) -> Sink:
        return self._runtime.integrations.sinks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._runtime.integrations.sinks)

    def __len__(self) -> int:
        return len(self._runtime.integrations.sinks)


WAIT_READ_MARGIN_S = 2.0
"""Socket read timeout beyond the WAIT timeout, so a WAIT that waits its full time is read."""


class SystemEventReporter(Protocol):
    """What the layers below the publisher tell it about sinks (see the module docstring).
    Implementations never raise: what is reported has happened already."""

    def after_attempt(self, sink: SinkConfig | None, sink_name: str, record: Mapping[str, Any], lane: str,
                      finished: Finished, pause_reason: str = "") -> None:
        """An attempt was recorded; ``finished`` says which transitions it caused."""

    def flush_failure_summaries(self) -> int:
        """Report the failure summaries that are due; returns how many."""

    def config_changed(self, entry: Mapping[str, Any], sink_type: str | None) -> None:
        """An audit ``entry`` recorded a change to a sink."""


class UnwiredReporter:
    """The reporter of a runtime nobody installed one on (e.g. a job run by a plain ``rq
    worker``): reports nothing, and says so once, so a missing installation is visible."""

    def __init__(self) -> None:
        self._warned = False

    def _warn(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("system events are not published by this process: its runtime has no reporter "
                        "(build it through the web app, the CLI or gateway.testing)")

    def after_attempt(self, sink: SinkConfig | None, sink_name: str, record: Mapping[str, Any], lane: str,
                      finished: Finished, pause_reason: str = "") -> None:
        """Reports nothing (warns once) when the attempt caused a transition."""
        if finished.circuit in ("opened", "closed") or finished.paused:
            self._warn()

    def flush_failure_summaries(self) -> int:
        """Reports nothing; the summaries stay due for a process that has a reporter."""
        return 0

    def config_changed(self, entry: Mapping[str, Any], sink_type: str | None) -> None:
        """Reports nothing (warns once)."""
        self._warn()


def durability_of(settings: Settings) -> Durability:
    """The settings' ``durability``, ``durability_replicas`` and ``durability_timeout``."""
    replicas = settings.durability_replicas if settings.durability == "replicated" else 0
    return Durability(replicas, round(settings.durability_timeout * 1000))


class Runtime:
    """The gateway's shared state for one process."""

    def __init__(self, settings: Settings, plugins: Plugins, redis_url: str,
                 embedded: EmbeddedRedis | None = None) -> None:
        self.settings = settings
        self.plugins = plugins
        self.redis_url = redis_url
        self.embedded = embedded
        self.durability = durability_of(settings)
        """When a write counts as acknowledged (:mod:`gateway.storage.replication`)."""
        self.redis: redis.Redis = connect(redis_url, socket_timeout=max(
            SOCKET_TIMEOUT_S, self.durability.timeout_ms / 1000 + WAIT_READ_MARGIN_S))
        self.keys = Keys(settings.key_prefix)
        self.queue = Queue(settings.queue, connection=self.redis, serializer=JSONSerializer)
        # Plugins read the sinks through the context at each call (SinkContext.sinks): give it
        # the current view's, whatever view that is then, never a copy.
        self.context = SinkContext(self.redis, settings.key_prefix, settings.public_url,
                                   event_types=plugins.catalog, sinks=_CurrentSinks(self))
        # The file's sinks never change in a process: built once, shared by every view.
        self._file_sinks: dict[str, Sink] = {}
        for sink_config in settings.sinks:
            sink_type = plugins.sink_types[sink_config.type]
            self._file_sinks[sink_config.name] = sink_type.factory(sink_config.name, sink_config.options,
                                                                   self.context)
        self._integrations: Integrations | None = None
        self._reload_lock = threading.Lock()
        self.max_drainers = environment.max_drainers()
        self.scripts = Scripts(self.redis, settings.key_prefix, self.max_drainers,
                               retention_ms=int(settings.retention_days * 86_400_000), durability=self.durability)
        self.extensions: dict[str, Any] = {}
        """Per-process state of the layers above, each under its own key."""
        self.reporter: SystemEventReporter = UnwiredReporter()
        """Where the engine and the integration store report sinks' transitions (module docstring)."""
        self._metrics: Metrics | None = None
        self._lock = threading.Lock()

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
        url, embedded = redis_url_for(settings.redis_url, settings.data_dir, settings.embedded_fsync)
        try:
            check_redis_url(url)
        except RedisUrlError as exc:
            raise ConfigError({"gateway.redis_url": [str(exc)]}, settings.source) from None
        if embedded is not None and start_embedded:
            embedded.start()
        return cls(settings, plugins, url, embedded)

    @property
    def metrics(self) -> Metrics:
        """This process's counters and histograms, built on first use (after
        ``PROMETHEUS_MULTIPROC_DIR`` is set, which must come first)."""
        if self._metrics is None:
            # A worker's delivery threads may all arrive here at once; two instances would
            # overwrite each other's counts (see gateway.metrics.Metrics).
            with self._lock:
                if self._metrics is None:
                    self._metrics = Metrics()
        return self._metrics

    # -- the integrations ---------------------------------------------------------------------
    @property
    def integrations(self) -> Integrations:
        """The current view of every sink (read from Redis on first use, then kept until a
        newer version is met: see the module docstring)."""
        view = self._integrations
        return view if view is not None else self.reload()

    def refresh(self) -> Integrations:
        """The view, reloaded first if Redis holds a newer version (one GET)."""
        stored = self.redis.get(self.keys.integrations_version)
        view = self._integrations
        if view is not None and view.version == (as_text(stored) if stored is not None else "0"):
            return view
        return self.reload()

    def reload(self) -> Integrations:
        """Read the sinks API's store (one MULTI) and build the view of its version; unchanged
        sinks keep their Sink objects."""
        keys = self.keys
        with self._reload_lock:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(keys.integrations_version)
                pipe.hgetall(keys.integrations)
                pipe.smembers(keys.deleted_sinks)
                pipe.get(keys.receive_secret)
                version, stored, deleted, receive = pipe.execute()
            version_text = as_text(version) if version is not None else "0"
            previous = self._integrations
            if previous is not None and previous.version == version_text:
                return previous
            view = self._build(version_text, {as_text(k): v for k, v in stored.items()},
                               frozenset(as_text(d) for d in deleted), receive, previous)
            self._integrations = view
            return view

    def _build(self, version: str, stored: dict[str, Any], deleted: frozenset[str], receive: Any,
               previous: Integrations | None) -> Integrations:
        settings = self.settings
        configs: dict[str, SinkConfig] = {c.name: c for c in settings.sinks}
        sinks: dict[str, Sink] = dict(self._file_sinks)
        invalid: dict[str, str] = {}
        records: list[tuple[str, StoredSink]] = []
        # Registered in one go after the loop: each registration recompiles the pattern of
        # every secret known, so one per sink made a start with N stored sinks O(N^2).
        new_secrets: list[str | None] = []
        for name, raw in stored.items():
            try:
                records.append((name, StoredSink.from_json(raw)))
            except (ValueError, KeyError, TypeError) as exc:
                invalid[name] = f"unreadable ({type(exc).__name__})"
        for name, record in sorted(records, key=lambda item: (item[1].created_at_ms, item[0])):
            if name in configs:
                invalid[name] = "a sink of the same name in the config file takes precedence"
                continue
            try:
                config = record.config(settings.delivery, self.plugins)
            except ConfigError as exc:
                invalid[name] = exc.describe()
                continue
            kept = previous.configs.get(name) if previous is not None else None
            kept_sink = previous.sinks.get(name) if previous is not None else None
            if kept is not None and kept_sink is not None and kept == config:
                # Same settings: the same objects, so caches keyed on them stay warm.
                configs[name], sinks[name] = kept, kept_sink
                continue
            try:
                sinks[name] = self.plugins.sink_types[config.type].factory(name, config.options, self.context)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug leaves out its sink, not the process
                invalid[name] = f"its sink type failed to build it: {type(exc).__name__}"
                continue
            configs[name] = config
            new_secrets.extend(sink_secret_values(config))
        register_secrets(new_secrets)
        for name, why in invalid.items():
            if previous is None or previous.invalid.get(name) != why:
                log.warning("stored sink %s is left out: %s", name, why)
        subscribers = {event.name: tuple(c for c in configs.values()
                                         if c.enabled and c.subscribes(event.name, wildcard=not event.system))
                       for event in self.plugins.catalog}
        view = Integrations(version, configs, sinks, subscribers, deleted, invalid)
        if settings.secret is not None:
            return dataclasses.replace(view, receive_secret=settings.secret, receive_source="config")
        if receive is not None:
            try:
                secret = StoredReceiveSecret.from_json(receive)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("the stored receive secret is unreadable (%s): unsigned requests are refused",
                            type(exc).__name__)
                # Fail closed: a secret exists, so nothing unsigned may get in (and nobody
                # knows this stand-in).
                return dataclasses.replace(view, receive_secret=secrets.token_hex(32), receive_source="api")
            register_secrets([secret.secret, *(value for value, _ in secret.retiring)])
            return dataclasses.replace(view, receive_secret=secret.secret, receive_source="api",
                                       receive_set_at_ms=secret.set_at_ms, receive_retiring=secret.retiring)
        return view

    @property
    def sinks(self) -> Mapping[str, Sink]:
        """Every sink's object, by name (the current view's)."""
        return self.integrations.sinks

    def sink_configs(self) -> tuple[SinkConfig, ...]:
        """Every sink's settings: the file's, then the API's in creation order."""
        return tuple(self.integrations.configs.values())

    def subscribers(self, event_name: str) -> tuple[SinkConfig, ...]:
        """Enabled sinks subscribed to ``event_name`` (a lookup table per view)."""
        return self.integrations.subscribers.get(event_name, ())

    def sink_config(self, name: str) -> SinkConfig:
        """The sink called ``name``; KeyError when there is none."""
        return self.integrations.configs[name]
