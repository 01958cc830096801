"""Module names from before the 0.2 layout, still importable for one release.

Third-party plugins imported a few internals by their old names (``gateway.http`` for
Retry-After parsing, ``gateway.config`` stays where it was), operators run
``gunicorn gateway.wsgi:app``, and retries scheduled before an upgrade sit in Redis as rq
jobs named ``gateway.jobs.requeue``: each old name imports the module's new home, with a
DeprecationWarning. Removed in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

RENAMED = {
    "gateway.app": "gateway.web.app",
    "gateway.attempt": "gateway.delivery.attempt",
    "gateway.builtin_events": "gateway.publish.builtin_events",
    "gateway.bus": "gateway.publish.publisher",
    "gateway.circuit": "gateway.delivery.circuit",
    "gateway.deliverylog": "gateway.delivery.delivery_log",
    "gateway.drainer": "gateway.delivery.drainer",
    "gateway.http": "gateway.delivery.http_client",
    "gateway.jobs": "gateway.delivery.jobs",
    "gateway.keys": "gateway.storage.keys",
    "gateway.retry": "gateway.delivery.retry",
    "gateway.schemas": "gateway.publish.schemas",
    "gateway.sinkstate": "gateway.delivery.sink_state",
    "gateway.ssrf": "gateway.delivery.ssrf",
    "gateway.store": "gateway.storage.connection",
    "gateway.sweeper": "gateway.delivery.sweeper",
    "gateway.tickets": "gateway.publish.tickets",
    "gateway.worker": "gateway.delivery.worker",
    "gateway.wsgi": "gateway.web.wsgi",
}


class _RenamedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old name and loads the module that now holds it."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in RENAMED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = RENAMED[spec.name]
        warnings.warn(f"{spec.name} is now {new}; the old name is removed in gateway 0.3",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: :meth:`create_module` returned the imported module."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (imported by :mod:`gateway`)."""
    if not any(isinstance(finder, _RenamedModules) for finder in sys.meta_path):
        sys.meta_path.append(_RenamedModules())
