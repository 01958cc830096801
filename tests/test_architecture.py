"""The house's shape (docs/architecture.md), read from the code's own imports: every
``import`` and ``from ... import`` of every module under gateway/, at any depth (function
level and ``if TYPE_CHECKING:`` included), must respect the layers and close no circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"

# The layers, lowest first: a module may import modules of its own rank or below.
RANKS = (
    ("foundation", ("gateway", "gateway._renamed", "gateway.admin_token", "gateway.config", "gateway.data_dir",
                    "gateway.environment", "gateway.errors", "gateway.events", "gateway.filters", "gateway.hookspecs",
                    "gateway.logs", "gateway.metrics", "gateway.plugins", "gateway.redact", "gateway.signing",
                    "gateway.sinks", "gateway.templates")),
    ("storage", ("gateway.storage",)),
    ("runtime", ("gateway.runtime",)),
    # The engine and the integration store report to the publisher through Runtime.reporter,
    # never by importing it; the publisher routes into the engine's queues.
    ("delivery", ("gateway.delivery",)),
    ("integrations", ("gateway.integrations",)),
    ("publish", ("gateway.publish",)),
    ("web and cli", ("gateway.web", "gateway.cli")),
    ("entry points and test fixtures", ("gateway.__main__", "gateway.testing")),
)
PLUGIN_API = {"gateway", "gateway.hookspecs", "gateway.sinks", "gateway.events", "gateway.plugins",
              "gateway.templates"}
FOUNDATION = {"gateway.errors", "gateway.environment", "gateway._renamed"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every gateway module ``path`` imports: ``from package import x`` is an edge to the
    submodule when x is one (the package's ``__init__`` only hands it on), else to the
    package."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up node.level - 1 levels
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m == "gateway" or m.startswith("gateway.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "plugin_template" not in p.parts}
    return {name: {m for m in imports_of(path, name, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def rank(name: str) -> int:
    """The layer ``name`` belongs to (its longest matching prefix); every module has one."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(RANKS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{name} is in no layer: add it to RANKS (and docs/architecture.md)"
    return best[0]


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = [f"{name} ({RANKS[rank(name)][0]}) -> {other} ({RANKS[rank(other)][0]})"
             for name, imported in graph().items() for other in imported if rank(other) > rank(name)]
    assert wrong == []


def test_the_plugin_api_imports_nothing_but_itself_and_the_foundation() -> None:
    edges = graph()
    wrong = [f"{name} -> {other}" for name in PLUGIN_API for other in edges[name]
             if other not in PLUGIN_API | FOUNDATION]
    assert wrong == []


def test_there_is_no_import_circle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("name", ["gateway.runtime", "gateway.web.app", "gateway.delivery.worker"])
def test_the_graph_sees_the_imports_it_should(name: str) -> None:
    # Guards the checks above against a parser that silently sees nothing.
    assert graph()[name]
