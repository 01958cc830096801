"""``gateway run`` (web + workers + embedded Redis, supervised) and ``gateway web``."""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import redis

from gateway import environment
from gateway.admin_token import ensure_admin_token, token_path
from gateway.cli.context import F, cli_settings, config_option
from gateway.cli.supervisor import Supervisor
from gateway.config import Settings
from gateway.data_dir import ensure_private_dir
from gateway.metrics import default_multiprocess_dir, ensure_multiprocess_dir, prepare_multiprocess_dir
from gateway.redact import without_password
from gateway.storage.connection import RedisUnavailable, connect, redis_url_for
from gateway.storage.keys import Keys
from gateway.web.receive import is_loopback
from gateway.web.wsgi import GatewayServer

log = logging.getLogger("gateway.cli")

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


def check_port(host: str, port: int) -> None:
    """One clear line, before anything starts, when ``host:port`` cannot be listened on (else
    gunicorn prints a banner's worth of retries and tracebacks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gunicorn binds: a port left in TIME_WAIT by a previous run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(f"port {port} is already in use on {host}: stop what is using it, or "
                                           f"choose another port with --port") from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                       "check --host and --port") from None


def check_data_dir(data_dir: str) -> None:
    """One clear line when the data directory (admin token, embedded Redis, metrics) cannot
    be written, instead of a traceback from whichever writes first."""
    path = Path(data_dir).expanduser()
    try:
        path = ensure_private_dir(path)  # 0700: it holds tickets and sink credentials
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise click.ClickException(f"the data directory {path.absolute()} is not writable ({exc.strerror or exc}): "
                                   "fix its permissions, or set gateway.data_dir in the config") from None


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


def receive_mode(settings: Settings, host: str, redis_url: str) -> str:
    """How the receive endpoint takes webhooks, for the banner; ClickException (the one line
    ``gateway run``/``web`` exit with) when it would take unsigned ones from the network by
    accident: no receive secret, not ``allow_unsigned``, and ``host`` is not loopback."""
    if settings.secret is not None:
        return "signed requests only (gateway.secret)"
    try:
        stored: bool | None = bool(connect(redis_url).exists(Keys(settings.key_prefix).receive_secret))
    except redis.RedisError:
        stored = None  # not known yet: each request is judged by the secret when Redis answers
    if stored:
        return "signed requests only (receive secret set through the API)"
    if settings.allow_unsigned:
        return "UNSIGNED requests accepted from any address (gateway.allow_unsigned = true)"
    if not (host == "localhost" or is_loopback(host)) and stored is not None:
        raise click.ClickException(
            f"refusing to listen on {host} without a receive secret: anyone who can reach it could create "
            "tickets. Set gateway.secret (or POST /api/receive-secret/rotate), listen on 127.0.0.1, or set "
            "gateway.allow_unsigned = true to accept unsigned webhooks from any address.")
    return "unsigned requests accepted from this machine only (no receive secret; set gateway.secret to sign)"


@click.command()
@_serve_options
@config_option
def web(host: str, port: int, web_workers: int) -> None:
    """Run the web server alone (gunicorn), e.g. on machines apart from the workers."""
    check_port(host, port)
    settings = cli_settings()
    check_data_dir(settings.data_dir)
    settings = ensure_admin_token(settings)
    url, embedded = _redis_for(settings)
    try:
        # Through logging, not echo: with --log-format json every line on stderr is JSON.
        log.info("signing: %s", receive_mode(settings, host, url))
    except click.ClickException:
        if embedded is not None:
            embedded.stop()
        raise
    # gunicorn's workers are forked from this process: they inherit where Redis and the config are.
    os.environ[environment.REDIS_URL] = url
    ensure_multiprocess_dir(settings.data_dir)
    if settings.source:
        os.environ[environment.CONFIG] = settings.source
    master = os.getpid()
    try:
        GatewayServer(settings.source, host=host, port=port, workers=web_workers, web=settings.web).run()
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
    check_port(host, port)
    settings = cli_settings()
    check_data_dir(settings.data_dir)
    settings = ensure_admin_token(settings)
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
    base = f"http://{shown_host}:{port}"
    lines = [f"Ticket event gateway on {base}  ({counts})",
             f"  Console:   {base}/admin  (sign in with the admin token: see Admin token below)",
             f"  Receive:   POST {base}/api/webhooks/receive"]
    if embedded is not None:
        lines.append(f"  Redis:     embedded, data in {embedded.data_dir} (append-only file on)")
    else:
        lines.append(f"  Redis:     {without_password(redis_url)}")
    if settings.sinks:
        for sink in settings.sinks:
            state = "" if sink.enabled else " (disabled)"
            lines.append(f"  Sink:      {sink.name} ({sink.type}) <- {', '.join(sink.events)}{state}")
    else:
        lines.append(f"  Sinks:     none in the config file (add them in the console, {base}/admin/integrations/new,"
                     " with POST /api/sinks or `gateway sinks add`)")
    lines.append(f"  Config:    {settings.source or 'built-in defaults'}")
    lines.append(f"  Signing:   {receive_mode(settings, host, redis_url)}")
    if token_file.exists() and token_file.read_text().strip() == settings.admin_token:
        lines.append(f"  Admin token: in {token_file.absolute()}  (show it: cat {token_file})")
        lines.append(f"  Admin API: Authorization: Bearer $(cat {token_file})")
    elif settings.admin_tokens and not settings.admin_token:
        lines.append("  Admin token: each admin's own, gateway.admin_tokens in the config")
    else:
        lines.append(f"  Admin token: gateway.admin_token in {settings.source or 'the config'}")
        lines.append("  Admin API: Authorization: Bearer <gateway.admin_token from the config>")
    click.echo("\n".join(lines), err=True)
