"""The plugin manager: builtin plugins plus everything under the ``gateway`` entry points.

A plugin that fails to import is reported (``gateway plugins``, ``GET /api/plugins``) and
skipped; a configured sink that needs it then fails config validation naming it.
``GATEWAY_PLUGINS`` (comma-separated entry-point names) restricts which entry points load,
which helps when bisecting a misbehaving plugin.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
import traceback
from importlib import metadata
from typing import Any

import flask
import pluggy

from gateway import __version__, environment, hookspecs
from gateway.events import Catalog, EventType, InvalidSample
from gateway.sinks import SinkType

BUILTIN_PLUGINS = ("gateway.publish.builtin_events",)
"""The core's own registrations, loaded like any plugin (datasette's DEFAULT_PLUGINS): the
guide's event types. The core's endpoints and commands are not plugins: the web app and the
CLI register their own."""
ENTRY_POINT_GROUP = "gateway"


@dataclasses.dataclass
class PluginInfo:
    """What ``gateway plugins`` shows for one plugin."""

    name: str
    version: str | None
    builtin: bool
    error: str | None = None
    sink_types: list[str] = dataclasses.field(default_factory=list)
    event_types: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PluginError(Exception):
    """A plugin broke a registration rule (e.g. a duplicate sink type)."""


class Plugins:
    """Loaded plugins and what they registered. Build one with :func:`load_plugins`."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.hook = pm.hook
        self.info: dict[str, PluginInfo] = {}
        self.sink_types: dict[str, SinkType] = {}
        self.catalog = Catalog()
        self.blueprints: list[flask.Blueprint] = []

    @property
    def failed(self) -> dict[str, str]:
        """Plugins that failed to load, with their error."""
        return {name: info.error for name, info in self.info.items() if info.error}

    def _collect(self) -> None:
        for impl in self.pm.hook.register_sink_types.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or "?"

            def register(sink_type: SinkType, _plugin: str = plugin_name) -> None:
                if sink_type.name in self.sink_types:
                    raise PluginError(f"sink type {sink_type.name!r} registered by {_plugin} "
                                      f"is already registered by {self.sink_types[sink_type.name].plugin}")
                sink_type = dataclasses.replace(sink_type, plugin=_plugin)
                self.sink_types[sink_type.name] = sink_type
                self.info[_plugin].sink_types.append(sink_type.name)

            impl.function(register=register)

        for impl in self.pm.hook.register_event_types.get_hookimpls():
            plugin_name = self.pm.get_name(impl.plugin) or "?"

            def register_event(event_type: EventType, _plugin: str = plugin_name) -> None:
                if event_type.name in self.catalog:
                    raise PluginError(f"event type {event_type.name!r} registered by {_plugin} is already "
                                      f"registered by {self.catalog.get(event_type.name).plugin}")
                try:
                    self.catalog.add(dataclasses.replace(event_type, plugin=_plugin))
                except InvalidSample as exc:
                    raise PluginError(f"event type {event_type.name!r} registered by {_plugin}: {exc}") from None
                self.info[_plugin].event_types.append(event_type.name)

            impl.function(register=register_event)

        self.pm.hook.register_blueprints(register=self.blueprints.append)

    def plugin_list(self) -> list[PluginInfo]:
        """Every plugin, builtins first, then by name."""
        return sorted(self.info.values(), key=lambda p: (not p.builtin, p.name))


def _dist_version(ep: metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


def _where(exc: BaseException, module: str) -> str:
    """`` (at path/to/plugin.py:12)``: the innermost line of the plugin's own code in the
    traceback of its load error, so its author need not reproduce it to find the line."""
    package = module.split(".", 1)[0]
    own = [frame for frame in traceback.extract_tb(exc.__traceback__)
           if package in pathlib.PurePath(frame.filename).parts
           or pathlib.PurePath(frame.filename).stem == package]
    return f" (at {own[-1].filename}:{own[-1].lineno})" if own else ""


def load_plugins(extra: list[Any] | None = None, entry_points: bool = True) -> Plugins:
    """Builtins, then entry-point plugins (filtered by ``GATEWAY_PLUGINS``), then ``extra``
    (objects or modules, e.g. from a test). Unknown hookimpls are errors (check_pending)."""
    pm = pluggy.PluginManager("gateway")
    pm.add_hookspecs(hookspecs)
    plugins = Plugins(pm)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        plugins.info[module_name] = PluginInfo(module_name, __version__, builtin=True)
    if entry_points:
        allow = environment.plugin_allow_list()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (allow is not None and ep.name not in allow) or pm.has_plugin(ep.name):
                continue
            info = PluginInfo(ep.name, _dist_version(ep), builtin=False)
            plugins.info[ep.name] = info
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not take the gateway down
                info.error = f"{type(exc).__name__}: {exc}{_where(exc, ep.module)}"
    for index, obj in enumerate(extra or []):
        name = getattr(obj, "__name__", None) or f"{type(obj).__name__}-{index}"
        pm.register(obj, name=name)
        plugins.info[name] = PluginInfo(name, None, builtin=False)
    pm.check_pending()
    plugins._collect()
    return plugins
