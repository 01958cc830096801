"""Where Redis is, and a client for it.

``redis_url`` from the config, else ``GATEWAY_REDIS_URL`` (set by ``gateway run`` for the
processes it starts), else the embedded server under the data directory
(:mod:`gateway.storage.embedded`).

Two kinds of URL:

* ``redis://``, ``rediss://`` (TLS), ``unix://``: one Redis at a fixed address (redis-py's own
  URL forms).
* ``redis+sentinel://[user:password@]host1:26379,host2:26379/<master-name>/<db>``, and
  ``rediss+sentinel://`` for TLS: Redis Sentinel. The client asks the sentinels where the
  master called ``<master-name>`` is, each time it opens a connection, so every process
  follows a failover by itself (redis-py's :class:`~redis.sentinel.Sentinel` and its
  ``SentinelConnectionPool``). ``user:password`` are the data nodes' credentials; the
  sentinels' own are ``?sentinel_username=`` / ``?sentinel_password=``. TLS options
  (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``) go in the query
  too and apply to sentinels and data nodes alike.

Whatever the URL, an error reply that says the server we are connected to is no longer a
writable master (``READONLY``, also when a Lua script's write meets it, and replica-only
refusals) closes that connection and raises :class:`redis.ConnectionError`: "the master
moved". The next connection goes to the new master; callers already treat a connection
error as "Redis unavailable" (503 + Retry-After on the receive path, a retry in workers).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection, parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from gateway.digits import is_ascii_digits
from gateway.storage.embedded import EmbeddedRedis, RedisUnavailable

REDIS_URL_ENV = "GATEWAY_REDIS_URL"
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
SENTINEL_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
SENTINEL_QUERY_OPTIONS = ("sentinel_username", "sentinel_password", *SENTINEL_TLS_OPTIONS)
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
SENTINEL_TIMEOUT_S = 2.0

__all__ = ["REDIS_URL_ENV", "EmbeddedRedis", "RedisUnavailable", "RedisUrlError", "SentinelUrl", "check_redis_url",
           "connect", "is_sentinel_url", "master_moved", "parse_sentinel_url", "redis_url_for", "sentinel_for",
           "transient"]


class RedisUrlError(ValueError):
    """A ``redis_url`` that cannot be used; the message says what is wrong (never the password)."""


# -- "the master moved" ----------------------------------------------------------------------------

_MOVED_CODES = (
    "READONLY",  # a write reached a replica (the old master, demoted)
    "MASTERDOWN",  # a replica that lost its master (replica-serve-stale-data no)
)


def master_moved(error: BaseException) -> bool:
    """True when ``error`` is a Redis reply meaning "this server is not the writable master
    any more": the connection is useless for writes and must go to the new master."""
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return True
    if not isinstance(error, redis.ResponseError):
        return False
    text = str(error)
    # A plain reply starts with its code; inside a Lua script's error (Redis 6) the code
    # follows a dash: "Error running script (...): @user_script:1: -READONLY You can't ...".
    return (any(text.startswith(code + " ") or f"-{code} " in text for code in _MOVED_CODES)
            or text.startswith("WAIT cannot be used with replica"))


def transient(error: BaseException) -> bool:
    """True for errors that say "Redis is not available for writes right now" rather than
    "this command is wrong": no connection, a timeout, the master moved, a master refusing
    writes for want of replicas (``min-replicas-to-write``) or still loading its data. The
    same command may succeed once a failover is over."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)) or master_moved(error):
        return True
    text = str(error) if isinstance(error, redis.ResponseError) else ""
    return any(text.startswith(code + " ") or f"-{code} " in text for code in ("NOREPLICAS", "LOADING"))


class _FollowsMaster:
    """Mixed into redis-py's connection classes: a reply saying the master moved closes the
    connection and becomes a :class:`redis.ConnectionError`. redis-py's Sentinel connection
    does this for a plain ``READONLY`` reply only; a Lua script that meets it answers with a
    generic script error, which would otherwise leave the connection on the old master."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc]
        except redis.ResponseError as exc:
            if not master_moved(exc):
                raise
            self.disconnect()  # type: ignore[attr-defined]
            raise redis.ConnectionError(f"the Redis master moved ({str(exc)[:120]})") from exc


class FollowingConnection(_FollowsMaster, Connection):
    """TCP connection to a fixed address (e.g. a proxy that follows the master)."""


class FollowingSSLConnection(_FollowsMaster, SSLConnection):
    """TLS connection to a fixed address."""


class FollowingUnixConnection(_FollowsMaster, UnixDomainSocketConnection):
    """Unix-socket connection."""


class SentinelFollowingConnection(_FollowsMaster, SentinelManagedConnection):
    """Connection to whichever server the sentinels name as master."""


class SentinelFollowingSSLConnection(_FollowsMaster, SentinelManagedSSLConnection):
    """TLS connection to whichever server the sentinels name as master."""


_FOLLOWING = {Connection: FollowingConnection, SSLConnection: FollowingSSLConnection,
              UnixDomainSocketConnection: FollowingUnixConnection}


# -- the sentinel URL ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def connection_kwargs(self) -> dict[str, Any]:
        """Options for connections to the data nodes (master, replicas)."""
        kwargs: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password}
        if self.tls:
            kwargs.update(self.tls_options)
        return kwargs

    def sentinel_kwargs(self) -> dict[str, Any]:
        """Options for connections to the sentinels: their own credentials, short timeouts and
        no retries, so a dead sentinel costs one refused connection before the next is asked."""
        kwargs: dict[str, Any] = {
            "username": self.sentinel_username, "password": self.sentinel_password,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S, "socket_timeout": SENTINEL_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.tls:
            kwargs.update(ssl=True, **self.tls_options)
        return kwargs

    def describe(self) -> str:
        """Where the data is, for banners and messages: no credentials."""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        scheme = SENTINEL_SCHEMES[1] if self.tls else SENTINEL_SCHEMES[0]
        return f"{scheme}://{hosts}/{self.master_name}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    """True for the ``redis+sentinel://`` and ``rediss+sentinel://`` forms."""
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis+sentinel://[user:password@]host1:26379,host2/<master-name>/<db>?options``.
    A host without a port uses 26379; ``<db>`` defaults to 0. Raises :class:`RedisUrlError`."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"A Sentinel URL starts with {' or '.join(s + '://' for s in SENTINEL_SCHEMES)}.")
    parts = urlsplit("x://" + rest)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels = tuple(_host_port(item) for item in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise RedisUrlError("The Sentinel URL names no master: "
                            "redis+sentinel://host1:26379,host2:26379/<master-name>/<db>.")
    if len(path) > 2 or (len(path) == 2 and not is_ascii_digits(path[1])):
        raise RedisUrlError("After the master's name the Sentinel URL takes only a database number: "
                            "/<master-name>/<db>.")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in SENTINEL_QUERY_OPTIONS:
            raise RedisUrlError(f"Unknown option {key[:40]!r} in the Sentinel URL "
                                f"(known: {', '.join(SENTINEL_QUERY_OPTIONS)}).")
        options[key] = value
    tls = scheme.lower() == SENTINEL_SCHEMES[1]
    tls_options = {k: v for k, v in options.items() if k in SENTINEL_TLS_OPTIONS}
    if tls_options and not tls:
        raise RedisUrlError(f"TLS options ({', '.join(tls_options)}) need the rediss+sentinel:// scheme.")
    return SentinelUrl(sentinels, path[0], int(path[1]) if len(path) == 2 else 0, username, password,
                       options.get("sentinel_username") or None, options.get("sentinel_password") or None,
                       tls, tls_options)


def _host_port(item: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, port_text = item[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise RedisUrlError("The Sentinel URL lists an empty sentinel address: "
                            "host1:26379,host2:26379 (comma-separated, port optional).")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not is_ascii_digits(port_text) or not 0 < int(port_text) < 65536:
        raise RedisUrlError(f"Sentinel {host[:60]!r} has an invalid port {port_text[:10]!r}.")
    return host, int(port_text)


def check_redis_url(url: str) -> None:
    """Raise :class:`RedisUrlError` unless ``url`` is a Redis URL the gateway can use."""
    if is_sentinel_url(url):
        parse_sentinel_url(url)
        return
    try:
        parse_url(url)
    except ValueError as exc:
        # redis-py's messages name the scheme or the option, never the credentials.
        raise RedisUrlError(f"{exc} Or, for Sentinel: redis+sentinel://host1:26379,host2:26379/<master-name>/<db>."
                            ) from None


# -- clients ---------------------------------------------------------------------------------------

def sentinel_for(url: str | SentinelUrl) -> Sentinel:
    """The :class:`~redis.sentinel.Sentinel` (the set of sentinels) a Sentinel URL names."""
    parsed = url if isinstance(url, SentinelUrl) else parse_sentinel_url(url)
    return Sentinel(list(parsed.sentinels), sentinel_kwargs=parsed.sentinel_kwargs(), **parsed.connection_kwargs())


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A client for ``url`` with short timeouts, so a dead Redis fails fast (503), not slowly.
    With a Sentinel URL, a client of the master that follows failovers."""
    options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": SOCKET_TIMEOUT_S,
                               "health_check_interval": 30}
    options.update(kwargs)
    if is_sentinel_url(url):
        parsed = parse_sentinel_url(url)
        options.setdefault("connection_class",
                           SentinelFollowingSSLConnection if parsed.tls else SentinelFollowingConnection)
        return sentinel_for(parsed).master_for(parsed.master_name, **options)
    if "connection_class" not in options:
        plain = parse_url(url).get("connection_class", Connection)
        options["connection_class"] = _FOLLOWING.get(plain, plain)
    return redis.Redis.from_url(url, **options)


def redis_url_for(configured: str | None, data_dir: str,
                  embedded_fsync: str = "always") -> tuple[str, EmbeddedRedis | None]:
    """Where Redis is: the config's ``redis_url``, else ``GATEWAY_REDIS_URL`` (set by
    ``gateway run`` for its children), else the embedded server under ``data_dir``
    (returned too, not yet started, with ``appendfsync`` set to ``embedded_fsync``)."""
    if configured:
        return configured, None
    env = os.environ.get(REDIS_URL_ENV)
    if env:
        return env, None
    embedded = EmbeddedRedis(data_dir, fsync=embedded_fsync)
    return embedded.url, embedded
