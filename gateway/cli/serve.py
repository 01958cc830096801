"""``gateway run`` (web + workers + embedded Redis, supervised) and ``gateway web``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import redis

from gateway import environment
from gateway.admin_token import ensure_admin_token, token_path
from gateway.cli.context import F, cli_settings, config_option
from gateway.cli.supervisor import Supervisor
from gateway.config import Settings
from gateway.metrics import default_multiprocess_dir, ensure_multiprocess_dir, prepare_multiprocess_dir
from gateway.redact import without_password
from gateway.storage.connection import RedisUnavailable, connect, redis_url_for
from gateway.web.wsgi import GatewayServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_WEB_WORKERS = 2


def _serve_options(f: F) -> F:
    f = click.option("--web-workers", type=click.IntRange(1, 256), default=DEFAULT_WEB_WORKERS,
                     envvar=environment.WEB_WORKERS, show_default=True, help="gunicorn worker processes.")(f)
    f = click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, envvar=environment.PORT,
                     show_default=True, help="Port to listen on.")(f)
    return click.option("--host", default=DEFAULT_HOST, envvar=environment.HOST, show_default=True,
                        help="Address to listen on.")(f)


def _redis_for(settings: Settings) -> tuple[str, Any]:
    """Where Redis is; the embedded server is started here (and returned, to be stopped)."""
    url, embedded = redis_url_for(settings.redis_url, settings.data_dir, settings.embedded_fsync)
    if embedded is not None:
        try:
            embedded.start()
        except RedisUnavailable as exc:
            raise click.ClickException(f"could not start the embedded Redis: {exc}") from None
    else:
        try:
            connect(url).ping()
        except redis.RedisError as exc:
            # Not fatal: Redis may come up later; meanwhile receive answers 503 (nothing lost).
            click.echo(f"warning: Redis at {without_password(url)} does not answer ({type(exc).__name__}); "
                       "requests get 503 until it does", err=True)
    return url, embedded


@click.command()
@_serve_options
@config_option
def web(host: str, port: int, web_workers: int) -> None:
    """Run the web server alone (gunicorn), e.g. on machines apart from the workers."""
    settings = ensure_admin_token(cli_settings())
    url, embedded = _redis_for(settings)
    # gunicorn's workers are forked from this process: they inherit where Redis and the config are.
    os.environ[environment.REDIS_URL] = url
    ensure_multiprocess_dir(settings.data_dir)
    if settings.source:
        os.environ[environment.CONFIG] = settings.source
    master = os.getpid()
    try:
        GatewayServer(settings.source, host=host, port=port, workers=web_workers).run()
    finally:
        # gunicorn's forked workers leave through this frame too (SystemExit): only the
        # master stops the Redis it started.
        if embedded is not None and os.getpid() == master:
            embedded.stop()


@click.command()
@_serve_options
@click.option("--workers", type=click.IntRange(0, 256), default=1, envvar=environment.WORKERS, show_default=True,
              help="Delivery worker processes.")
@config_option
def run(host: str, port: int, web_workers: int, workers: int) -> None:
    """Run everything: web server, delivery workers and (when no redis_url is configured)
    an embedded Redis, supervised together. Ctrl-C stops them all."""
    settings = ensure_admin_token(cli_settings())
    # Before anything starts, and before `env` is taken: web and worker processes share
    # metrics through this directory (PROMETHEUS_MULTIPROC_DIR).
    prepare_multiprocess_dir(default_multiprocess_dir(settings.data_dir))
    url, embedded = _redis_for(settings)
    env = dict(os.environ)
    env[environment.REDIS_URL] = url
    if settings.source:
        env[environment.CONFIG] = settings.source
    supervisor = Supervisor(env, echo=lambda line: click.echo(f"[gateway] {line}", err=True), redis=embedded)
    try:
        _banner(settings, host, port, url, embedded, web_workers, workers, token_path(settings))
        base = [sys.executable, "-m", "gateway"]
        web_args = ["web", "--host", host, "--port", str(port), "--web-workers", str(web_workers)]
        supervisor.add("web", [*base, *web_args], restart=False)
        for index in range(1, workers + 1):
            supervisor.add(f"worker-{index}", [*base, "worker"], restart=True)
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
        lines.append(f"  Redis:     {without_password(redis_url)}")
    if settings.sinks:
        for sink in settings.sinks:
            state = "" if sink.enabled else " (disabled)"
            lines.append(f"  Sink:      {sink.name} ({sink.type}) <- {', '.join(sink.events)}{state}")
    else:
        lines.append("  Sinks:     none in the config file (add some: POST /api/sinks or `gateway sinks add`)")
    lines.append(f"  Config:    {settings.source or 'built-in defaults'}")
    if settings.secret is None:
        lines.append("  Signing:   gateway.secret not set: unsigned webhooks are accepted unless a receive "
                     "secret is set (POST /api/receive-secret/rotate)")
    if token_file.exists() and token_file.read_text().strip() == settings.admin_token:
        lines.append(f"  Admin API: Authorization: Bearer $(cat {token_file})")
    else:
        lines.append("  Admin API: Authorization: Bearer <gateway.admin_token from the config>")
    click.echo("\n".join(lines), err=True)
