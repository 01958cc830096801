"""``gateway new-plugin NAME``: scaffold an installable sink plugin package.

The package is rendered from the templates in ``gateway/cli/plugin_template/`` (Jinja2,
``.j2`` files; ``__package__`` and ``__type__`` in a path become the package and type
names): ``setup.cfg`` with the ``gateway`` entry point, ``pyproject.toml``, a
:class:`~gateway.sinks.Sink` subclass with its options schema, a README, and tests that
pass as generated, using the fixtures of :mod:`gateway.testing`.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click
import jinja2

from gateway import __version__

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
MAX_NAME = 40
TEMPLATE_SUFFIX = ".j2"


class ScaffoldError(click.ClickException):
    """A name or target directory the scaffold cannot use."""


@dataclasses.dataclass(frozen=True)
class PluginNames:
    """Every name the scaffold derives from ``NAME`` (e.g. ``acme-crm``)."""

    name: str
    type_name: str
    """The sink type and entry-point name: ``acme_crm``."""
    package: str
    """The import package: ``gateway_acme_crm``."""
    dist_name: str
    """The distribution: ``gateway-acme-crm``."""
    class_prefix: str
    """For class names: ``AcmeCrm`` (``AcmeCrmSink``, ``AcmeCrmOptions``)."""

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        """Derive the names; :class:`ScaffoldError` explains what a valid NAME looks like."""
        cleaned = name.strip().lower()
        for prefix in ("gateway-", "gateway_"):
            if cleaned.startswith(prefix):
                cleaned = cleaned[len(prefix):]
        if not NAME_PATTERN.match(cleaned) or len(cleaned) > MAX_NAME:
            raise ScaffoldError(f"{name!r} is not a usable plugin name: use lowercase letters and digits, "
                                f"words separated by '-' or '_', starting with a letter, at most {MAX_NAME} "
                                "characters (e.g. acme-crm).")
        type_name = cleaned.replace("-", "_")
        return cls(name=cleaned, type_name=type_name, package=f"gateway_{type_name}",
                   dist_name=f"gateway-{cleaned.replace('_', '-')}",
                   class_prefix="".join(part.capitalize() for part in type_name.split("_")))


def _templates() -> Traversable:
    return resources.files("gateway.cli").joinpath("plugin_template")


def _walk(root: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            found.extend(_walk(entry, (*prefix, entry.name)))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            found.append(((*prefix, entry.name), entry))
    return found


def scaffold(name: str, directory: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Write a new plugin package for ``name`` into ``directory`` (default:
    ``./<distribution name>``), which must not exist or be empty. Returns the directory and
    the files written."""
    names = PluginNames.from_name(name)
    target = Path(directory) if directory is not None else Path.cwd() / names.dist_name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not empty; choose another --directory.")
    env = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    context = {**dataclasses.asdict(names), "gateway_version": __version__}
    written: list[Path] = []
    for parts, template in _walk(_templates()):
        relative = [part.replace("__package__", names.package).replace("__type__", names.type_name)
                    for part in parts]
        relative[-1] = relative[-1][: -len(TEMPLATE_SUFFIX)]
        path = target.joinpath(*relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = env.from_string(template.read_text(encoding="utf-8")).render(context)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return target, written


@click.command("new-plugin")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False), default=None,
              help="Where to create the package (default: ./gateway-NAME).")
def new_plugin_command(name: str, directory: str | None) -> None:
    """Scaffold an installable sink plugin package NAME (e.g. acme-crm): setup.cfg with the
    `gateway` entry point, a Sink subclass with its options schema, passing tests, README."""
    target, written = scaffold(name, directory)
    names = PluginNames.from_name(name)
    click.echo(f"Created {names.dist_name} (sink type {names.type_name!r}) in {target}:")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    click.echo(f"\nNext:\n  cd {target}\n  pip install -e '.[test]'\n  pytest\n  gateway plugins")
