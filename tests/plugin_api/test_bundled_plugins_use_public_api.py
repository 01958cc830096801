"""The bundled plugins are the examples third parties copy, so they may use only what a
third party has: the package root (``from gateway import ...``, the plugin API) and
``gateway.testing``; never another ``gateway.`` module, nor the core's own test modules
(``support``, ...). Their imports are read with ast: a comment or a string naming a module
does not count, an import inside a function or under ``TYPE_CHECKING`` does."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
ALLOWED_GATEWAY_MODULES = {"gateway", "gateway.testing"}
CORE_TEST_MODULES = {path.stem for path in (ROOT / "tests").iterdir()
                     if (path.suffix == ".py" or path.is_dir()) and not path.name.startswith(("_", "."))}
"""What the core's tests can import as top-level modules (tests/ is on sys.path):
``support``, ``conftest``, the layer folders, ..."""


def forbidden_imports(source: str, filename: str) -> list[str]:
    """Every import in ``source`` of a gateway module other than the package root and
    gateway.testing, or of the core's test modules: ``"<file>:<line>: <module>"``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "gateway":
                # `from gateway import signing` imports the module gateway.signing; only the
                # names the package root exports are its public API.
                modules = [f"gateway.{alias.name}" for alias in node.names if alias.name not in gateway.__all__]
            else:
                modules = [node.module]
        else:
            continue  # relative imports stay inside the plugin's own package
        for module in modules:
            root = module.split(".")[0]
            if (root == "gateway" and module not in ALLOWED_GATEWAY_MODULES) or root in CORE_TEST_MODULES:
                found.append((node.lineno, module))
    return [f"{filename}:{line}: {module}" for line, module in sorted(found)]


def offenders(pattern: str) -> list[str]:
    files = sorted(PLUGINS.glob(pattern))
    assert files, f"no files match plugins/{pattern}"
    return [found for path in files
            for found in forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]


def test_the_check_finds_internal_imports_however_they_are_written() -> None:
    source = '''
from typing import TYPE_CHECKING

import pytest
import gateway
from gateway import ConfigError, Event, hookimpl, testing
from gateway.testing import RecordingSink
from gateway.config import url_field
from gateway import signing
import gateway.events as events
from support.servers import SinkServer
from . import options

NOT_AN_IMPORT = "from gateway.plugins import load_plugins"  # from gateway.runtime import Runtime

if TYPE_CHECKING:
    from gateway.runtime import Runtime


def later():
    from gateway.delivery.http_client import retry_after
'''
    assert [found.split(": ")[1] for found in forbidden_imports(source, "example.py")] == [
        "gateway.config", "gateway.signing", "gateway.events", "support.servers", "gateway.runtime",
        "gateway.delivery.http_client"]


def test_bundled_plugins_tests_import_only_gateway_and_gateway_testing() -> None:
    assert offenders("*/tests/**/*.py") == []


def test_bundled_plugins_code_imports_only_gateway() -> None:
    assert offenders("*/gateway_*/**/*.py") == []
