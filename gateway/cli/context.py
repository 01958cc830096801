"""What every command needs: ``--config``, the validated settings, the plugins, a runtime,
and tables or JSON on stdout. Plugins' commands may use these too.

Every command takes ``--config F`` (else ``GATEWAY_CONFIG``, else ``./gateway.toml``, else
the built-in defaults). Errors in the configuration exit with status 2, one
``path: message`` line per problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from gateway.config import ConfigError, Settings, load_config
from gateway.plugins import Plugins, load_plugins
from gateway.publish import plugin_services
from gateway.runtime import Runtime
from gateway.storage.connection import RedisUnavailable, RedisUrlError, check_redis_url

F = TypeVar("F", bound=Callable[..., Any])
CONFIG_META = "gateway.config"
PLUGINS_META = "gateway.plugins"
CONFIG_ERROR_EXIT = 2


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[CONFIG_META] = value  # ctx.meta is shared by the whole command chain
    return value


def config_option(f: F) -> F:
    """Add ``--config F`` to a command; read the result with :func:`config_path`."""
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), default=None, expose_value=False,
        is_eager=True, callback=_remember_config,
        help="Config file (default: $GATEWAY_CONFIG, else ./gateway.toml, else built-in defaults).",
    )(f)


def config_path() -> str | None:
    """The ``--config`` given on the command line (group or command level), if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(CONFIG_META) if ctx is not None else None


def cli_plugins() -> Plugins:
    """The loaded plugins (loaded once per command line)."""
    ctx = click.get_current_context()
    if PLUGINS_META not in ctx.meta:
        ctx.meta[PLUGINS_META] = _load_plugins_safely()
    return ctx.meta[PLUGINS_META]


def cli_settings(path: str | None = None) -> Settings:
    """The validated configuration; on errors print them and exit with status 2."""
    try:
        settings = load_config(path or config_path(), cli_plugins())
        if settings.redis_url:
            try:
                check_redis_url(settings.redis_url)
            except RedisUrlError as exc:
                raise ConfigError({"gateway.redis_url": [str(exc)]}, settings.source) from None
        return settings
    except ConfigError as exc:
        _config_errors(exc)


def cli_runtime() -> Runtime:
    """A :class:`Runtime` for a command: config validated (exit 2 on errors), Redis
    reached. With no Redis configured the embedded one is used; if it is not already running
    (under ``gateway run``), it is started for this command and stopped when it ends, so no
    redis-server outlives the command."""
    try:
        runtime = plugin_services.provide(Runtime.from_settings(cli_settings(), cli_plugins()))
    except ConfigError as exc:  # GATEWAY_REDIS_URL, checked when the runtime is built
        _config_errors(exc)
    except RedisUnavailable as exc:
        raise click.ClickException(f"could not start the embedded Redis: {exc}") from None
    if runtime.embedded is not None and runtime.embedded.process is not None:
        click.get_current_context().call_on_close(runtime.embedded.stop)
    return runtime


def _config_errors(exc: ConfigError) -> NoReturn:
    where = f" in {exc.source}" if exc.source else ""
    click.echo(f"Configuration errors{where}:", err=True)
    click.echo(exc.describe(), err=True)
    raise SystemExit(CONFIG_ERROR_EXIT) from None


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as aligned columns under ``headers`` (for humans; offer ``--json`` too)."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip())


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _load_plugins_safely() -> Plugins:
    try:
        return load_plugins()
    # Any error (e.g. two plugins registering one sink type) must still leave a working CLI.
    except Exception as exc:  # noqa: BLE001
        click.echo(f"warning: plugins failed to load ({type(exc).__name__}: {exc}); "
                   "using the builtin plugins only", err=True)
        return load_plugins(entry_points=False)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
"""``--json``: print JSON instead of a table."""


def require_sink(runtime: Runtime, name: str | None) -> None:
    """A ``--sink`` option's check: exit with a usage error unless ``name`` is configured."""
    if name is not None and name not in runtime.refresh().sinks:
        known = ", ".join(sorted(runtime.sinks)) or "none"
        raise click.BadParameter(f"No sink named {name!r} is configured (configured: {known}).",
                                 param_hint="--sink")
