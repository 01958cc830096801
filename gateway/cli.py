"""The ``gateway`` command line (click).

Core commands live here: ``run``, ``web``, ``plugins``, ``events``, ``config check`` and
``sign``. Everything else (``worker``, ``deliveries``, ``replay``, ...) is added by plugins,
builtin or third-party, through the ``register_commands(cli)`` hook. Plugins are loaded
the first time a command is looked up that the core does not have (or when the commands
are listed, as ``--help`` does), so ``gateway sign`` never imports them and a plugin that
fails to load is reported on stderr instead of breaking the CLI.

Every command takes ``--config F`` (else ``GATEWAY_CONFIG``, else ``./gateway.toml``, else
the built-in defaults). Errors in the configuration exit with status 2, one
``path: message`` line per problem.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config import Settings
    from gateway.plugins import Plugins
    from gateway.runtime import Runtime

F = TypeVar("F", bound=Callable[..., Any])
CONFIG_META = "gateway.config"
PLUGINS_META = "gateway.plugins"
CONFIG_ERROR_EXIT = 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_WEB_WORKERS = 2


# -- helpers for commands (plugins' commands may use them too) ---------------------------------

def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[CONFIG_META] = value  # ctx.meta is shared by the whole command chain
    return value


def config_option(f: F) -> F:
    """Add ``--config F`` to a command; read the result with :func:`config_path`."""
    return click.option(  # type: ignore[return-value]
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
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path or config_path(), cli_plugins())
    except ConfigError as exc:
        where = f" in {exc.source}" if exc.source else ""
        click.echo(f"Configuration errors{where}:", err=True)
        click.echo(exc.describe(), err=True)
        raise SystemExit(CONFIG_ERROR_EXIT) from None


def cli_runtime() -> Runtime:
    """A :class:`Runtime` for a command: config validated (exit 2 on errors), Redis
    reached. With no Redis configured the embedded one is used; if it is not already running
    (under ``gateway run``), it is started for this command and stopped when it ends, so no
    redis-server outlives the command."""
    from gateway.runtime import Runtime
    from gateway.store import RedisUnavailable

    try:
        runtime = Runtime.from_settings(cli_settings(), cli_plugins())
    except RedisUnavailable as exc:
        raise click.ClickException(f"could not start the embedded Redis: {exc}") from None
    if runtime.embedded is not None and runtime.embedded.process is not None:
        click.get_current_context().call_on_close(runtime.embedded.stop)
    return runtime


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as aligned columns under ``headers`` (for humans; offer ``--json`` too)."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _load_plugins_safely() -> Plugins:
    from gateway.plugins import load_plugins

    try:
        return load_plugins()
    # Any error (e.g. two plugins registering one sink type) must still leave a working CLI.
    except Exception as exc:  # noqa: BLE001
        click.echo(f"warning: plugins failed to load ({type(exc).__name__}: {exc}); "
                   "using the builtin plugins only", err=True)
        return load_plugins(entry_points=False)


# -- the group ---------------------------------------------------------------------------------

class GatewayCLI(click.Group):
    """The ``gateway`` group: core commands, plus plugin commands added on first lookup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_added = False
        self._adding_for: str | None = None

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if self._adding_for is not None and name in self.commands:
            # click would silently replace it: a plugin must not take over `run` or another plugin's command.
            click.echo(f"warning: plugin {self._adding_for} tried to add a command {name!r} that already "
                       "exists; ignored", err=True)
            return
        super().add_command(cmd, name)

    def add_plugin_commands(self) -> None:
        """Call every plugin's ``register_commands(cli=self)`` once. A plugin whose hook
        raises is reported and skipped; the others still add their commands."""
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        ctx = click.get_current_context(silent=True)
        plugins = ctx.meta.get(PLUGINS_META) if ctx is not None else None
        if plugins is None:
            plugins = _load_plugins_safely()
            if ctx is not None:
                ctx.meta[PLUGINS_META] = plugins
        for impl in plugins.pm.hook.register_commands.get_hookimpls():
            name = plugins.pm.get_name(impl.plugin)
            self._adding_for = name
            try:
                impl.function(cli=self)
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
                click.echo(f"warning: plugin {name} could not add its commands: {type(exc).__name__}: {exc}",
                           err=True)
            finally:
                self._adding_for = None

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self.add_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=GatewayCLI, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@config_option
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="GATEWAY_LOG_FORMAT",
              show_default=True, help="Log lines as text or one JSON object per line (level: $GATEWAY_LOG_LEVEL).")
def cli(log_format: str) -> None:
    """Ticket event gateway: receive signed tickets, publish events, deliver them to sinks."""
    from gateway import logs

    logs.configure(log_format, os.environ.get(logs.LEVEL_ENV, "INFO"))
    os.environ[logs.FORMAT_ENV] = log_format  # processes that `gateway run` starts log the same way


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``gateway``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="gateway")


# -- serving -----------------------------------------------------------------------------------

def _serve_options(f: F) -> F:
    f = click.option("--web-workers", type=click.IntRange(1, 256), default=DEFAULT_WEB_WORKERS,
                     envvar="GATEWAY_WEB_WORKERS", show_default=True, help="gunicorn worker processes.")(f)
    f = click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, envvar="GATEWAY_PORT",
                     show_default=True, help="Port to listen on.")(f)
    return click.option("--host", default=DEFAULT_HOST, envvar="GATEWAY_HOST", show_default=True,  # type: ignore[return-value]
                        help="Address to listen on.")(f)


def _redis_for(settings: Settings) -> tuple[str, Any]:
    """Where Redis is; the embedded server is started here (and returned, to be stopped)."""
    from gateway.store import RedisUnavailable, redis_url_for

    url, embedded = redis_url_for(settings.redis_url, settings.data_dir)
    if embedded is not None:
        try:
            embedded.start()
        except RedisUnavailable as exc:
            raise click.ClickException(f"could not start the embedded Redis: {exc}") from None
    else:
        import redis

        from gateway.store import connect

        try:
            connect(url).ping()
        except redis.RedisError as exc:
            # Not fatal: Redis may come up later; meanwhile receive answers 503 (nothing lost).
            click.echo(f"warning: Redis at {_without_password(url)} does not answer ({type(exc).__name__}); "
                       "requests get 503 until it does", err=True)
    return url, embedded


@cli.command()
@_serve_options
@config_option
def web(host: str, port: int, web_workers: int) -> None:
    """Run the web server alone (gunicorn), e.g. on machines apart from the workers."""
    from gateway.admin_token import ensure_admin_token
    from gateway.store import REDIS_URL_ENV
    from gateway.wsgi import GatewayServer

    settings = ensure_admin_token(cli_settings())
    url, embedded = _redis_for(settings)
    # gunicorn's workers are forked from this process: they inherit where Redis and the config are.
    os.environ[REDIS_URL_ENV] = url
    from gateway.metrics import ensure_multiprocess_dir

    ensure_multiprocess_dir(settings.data_dir)
    if settings.source:
        os.environ["GATEWAY_CONFIG"] = settings.source
    master = os.getpid()
    try:
        GatewayServer(settings.source, host=host, port=port, workers=web_workers).run()
    finally:
        # gunicorn's forked workers leave through this frame too (SystemExit): only the
        # master stops the Redis it started.
        if embedded is not None and os.getpid() == master:
            embedded.stop()


@cli.command()
@_serve_options
@click.option("--workers", type=click.IntRange(0, 256), default=1, envvar="GATEWAY_WORKERS", show_default=True,
              help="Delivery worker processes.")
@config_option
def run(host: str, port: int, web_workers: int, workers: int) -> None:
    """Run everything: web server, delivery workers and (when no redis_url is configured)
    an embedded Redis, supervised together. Ctrl-C stops them all."""
    from gateway.admin_token import ensure_admin_token, token_path
    from gateway.store import REDIS_URL_ENV
    from gateway.supervisor import Supervisor

    settings = ensure_admin_token(cli_settings())
    # Before anything starts, and before `env` is taken: web and worker processes share
    # metrics through this directory (PROMETHEUS_MULTIPROC_DIR).
    from gateway.metrics import default_multiprocess_dir, prepare_multiprocess_dir

    prepare_multiprocess_dir(default_multiprocess_dir(settings.data_dir))
    url, embedded = _redis_for(settings)
    env = dict(os.environ)
    env[REDIS_URL_ENV] = url
    if settings.source:
        env["GATEWAY_CONFIG"] = settings.source
    supervisor = Supervisor(env, echo=lambda line: click.echo(f"[gateway] {line}", err=True), redis=embedded)
    try:
        has_worker = cli.get_command(click.get_current_context(), "worker") is not None
        _banner(settings, host, port, url, embedded, web_workers, workers if has_worker else 0,
                token_path(settings))
        if not has_worker and workers:
            click.echo("warning: no `gateway worker` command is installed: events are stored but not delivered",
                       err=True)
        base = [sys.executable, "-m", "gateway"]
        supervisor.add("web", base + ["web", "--host", host, "--port", str(port), "--web-workers",
                                      str(web_workers)], restart=False)
        for index in range(1, (workers if has_worker else 0) + 1):
            supervisor.add(f"worker-{index}", base + ["worker"], restart=True)
    except BaseException:
        supervisor.stop()  # whatever started, Redis included
        raise
    raise SystemExit(supervisor.run())


def _banner(settings: Settings, host: str, port: int, redis_url: str, embedded: Any, web_workers: int,
            workers: int, token_file: Path) -> None:
    shown_host = f"[{host}]" if ":" in host else host
    counts = (f"{web_workers} web worker{'s' * (web_workers != 1)}, "
              f"{workers} delivery worker{'s' * (workers != 1)}")
    lines = [f"Ticket event gateway on http://{shown_host}:{port}  ({counts})",
             f"  Receive:   POST http://{shown_host}:{port}/api/webhooks/receive"]
    if embedded is not None:
        lines.append(f"  Redis:     embedded, data in {embedded.data_dir} (append-only file on)")
    else:
        lines.append(f"  Redis:     {_without_password(redis_url)}")
    if settings.sinks:
        for sink in settings.sinks:
            state = "" if sink.enabled else " (disabled)"
            lines.append(f"  Sink:      {sink.name} ({sink.type}) <- {', '.join(sink.events)}{state}")
    else:
        lines.append("  Sinks:     none configured (see gateway.example.toml)")
    lines.append(f"  Config:    {settings.source or 'built-in defaults'}")
    if settings.secret is None:
        lines.append("  Signing:   gateway.secret not set: unsigned webhooks are accepted")
    if token_file.exists() and token_file.read_text().strip() == settings.admin_token:
        lines.append(f"  Admin API: Authorization: Bearer $(cat {token_file})")
    else:
        lines.append("  Admin API: Authorization: Bearer <gateway.admin_token from the config>")
    click.echo("\n".join(lines), err=True)


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# -- inspection --------------------------------------------------------------------------------

def _abbreviate(names: Sequence[str], keep: int = 3) -> str:
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", +{len(names) - keep} more"


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
def plugins_command(as_json: bool) -> None:
    """List loaded plugins: version, sink types, event types, load errors."""
    infos = cli_plugins().plugin_list()
    if as_json:
        echo_json([info.to_json() for info in infos])
        return
    echo_table(["name", "version", "sink types", "event types", "status"],
               [[i.name, i.version or "-", ", ".join(i.sink_types) or "-", _abbreviate(i.event_types) or "-",
                 "failed" if i.error else "ok"] for i in infos])
    for info in infos:
        if info.error:
            click.echo(f"\n{info.name} failed to load: {info.error}")


@cli.command("events")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with sample payloads) instead of a table.")
@config_option
def events_command(as_json: bool) -> None:
    """List the event catalogue: every event a sink can subscribe to."""
    catalog = cli_plugins().catalog
    if as_json:
        echo_json([{"name": t.name, "description": t.description, "plugin": t.plugin, "sample": t.sample}
                   for t in catalog])
        return
    echo_table(["event", "description", "plugin"], [[t.name, t.description, t.plugin] for t in catalog])


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@config_option
def config_check(file: str | None) -> None:
    """Validate the configuration (FILE, else --config, else the usual places).
    Exit 0 when valid; exit 2 listing each bad field by path."""
    settings = cli_settings(file)
    count = len(settings.sinks)
    click.echo(f"OK: {count} sink{'s' * (count != 1)} ({settings.source or 'built-in defaults'})")
    if settings.secret is None:
        click.echo("note: gateway.secret is not set, so unsigned webhooks are accepted")


@cli.command()
@click.option("--secret", envvar="WEBHOOK_SECRET", default=None,
              help="The shared secret (default: $WEBHOOK_SECRET, else gateway.secret from the config).")
@click.argument("body", type=click.File("rb"), default="-")
@config_option
def sign(secret: str | None, body: Any) -> None:
    """Print the X-Webhook-Signature for the exact bytes of BODY (a file, or - for stdin):
    hex HMAC-SHA256 keyed with the secret, as the guide computes it."""
    from gateway.signing import hex_signature

    if secret is None:
        secret = cli_settings().secret
        if secret is None:
            raise click.UsageError("give --secret (or set WEBHOOK_SECRET); the config has no gateway.secret")
    click.echo(hex_signature(body.read(), secret))


if __name__ == "__main__":  # pragma: no cover
    main()
