"""The outbound HTTP client: the only code that sends deliveries.

Built on urllib3 directly rather than ``requests.Session``: DESIGN.md measured a bare
urllib3 loop at ~2,300 req/s on this machine and the delivery target is >= 1,000
deliveries/s over 2 worker processes; requests adds several times urllib3's per-call cost
(hooks, cookie jar, proxy/netrc environment lookups, adapters) and none of it is wanted
here. So ``requests`` stays out of the hot path.

What it guarantees, for every sink:

* keep-alive connections pooled per destination, shared safely by all worker threads;
* ``timeout`` is the whole budget: connect within ``min(timeout, 5 s)``, the rest for the
  response, and the body read stops at the deadline too;
* redirects are never followed: a 3xx comes back as a :class:`~gateway.sinks.Response`;
* at most :data:`MAX_RESPONSE_BYTES` of a response body are read (a larger body is cut,
  not an error; the engine keeps a 2 KB excerpt);
* the SSRF guard (:mod:`gateway.delivery.ssrf`) unless ``allow_private_networks``;
* only ``http``/``https`` URLs; credentials in a URL (``https://user:pass@host/``) are
  sent as HTTP Basic auth, as browsers and ``requests`` do, and never appear in errors;
* errors are :class:`DeliveryError` with a stable code and a message that names the host
  and port but never the path or query (Slack webhook URLs carry their secret there).
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import http.client
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Self
from urllib.parse import unquote

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry, Timeout, make_headers, parse_url

from gateway.delivery.ssrf import GuardedHTTPConnectionPool, GuardedHTTPSConnectionPool, SsrfRefused
from gateway.delivery.wire import REQUEST_TIMEOUT, OneWriteHTTPConnectionPool, OneWriteHTTPSConnectionPool
from gateway.digits import is_ascii_digits
from gateway.sinks import OutgoingRequest, Response

MAX_RESPONSE_BYTES = 64 * 1024
"""How much of a response body is read; the rest is discarded with the connection."""
MAX_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRY_AFTER = 3600.0
"""Default cap for Retry-After, matching ``delivery.max_retry_after``'s default."""
_READ_CHUNK = 16 * 1024
_ERROR_CODES = frozenset({"connect_error", "timeout", "ssrf_refused", "invalid_url", "invalid_request",
                          "tls_error", "too_large"})

# What urllib3 and http.client raise for network trouble; anything else is a bug and propagates.
_TRANSPORT_ERRORS = (HTTPError, OSError, http.client.HTTPException)

log = logging.getLogger(__name__)
_NO_RETRIES = Retry(False, redirect=False)
"""What ``retries=False`` becomes inside urllib3, built once instead of per request
(a Retry is immutable: sharing it between threads is safe)."""
_TARGET_CACHE = 1024
"""Parsed destination URLs kept per client: a sink sends to the same few over and over."""


@functools.lru_cache(maxsize=64)
def _budget(timeout: float) -> Timeout:
    """The urllib3 Timeout of a request with ``timeout`` seconds in all, built once per value
    (sinks use a few): urllib3 only ever uses clones of it (a Timeout records when its
    connect started), so one object serves every request and thread."""
    return Timeout(connect=min(timeout, MAX_CONNECT_TIMEOUT), read=timeout, total=timeout)


@dataclasses.dataclass(frozen=True)
class _Destination:
    """What ``send`` needs from a URL, parsed and checked once per URL rather than per request."""

    scheme: str
    host: str
    port: int | None
    request_uri: str
    where: str
    """host:port, the only part of a URL errors may show."""
    authorization: str | None
    """Basic auth from credentials in the URL."""


def _destination(url_text: str) -> _Destination:
    try:
        url = parse_url(url_text)
    except LocationValueError:
        raise DeliveryError("invalid_url", "The URL cannot be parsed.") from None
    if url.scheme not in ("http", "https"):
        raise DeliveryError("invalid_url", f"Only http and https URLs can be delivered to, not "
                            f"{url.scheme or 'a URL without a scheme'}.")
    if not url.host:
        raise DeliveryError("invalid_url", "The URL has no host.")
    where = f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"
    authorization = make_headers(basic_auth=unquote(url.auth))["authorization"] if url.auth else None
    return _Destination(url.scheme, url.host, url.port, url.request_uri, where, authorization)


class DeliveryError(Exception):
    """An outgoing request failed before a response arrived.

    ``code`` is one of ``connect_error``, ``timeout``, ``ssrf_refused``, ``invalid_url``,
    ``invalid_request`` (a header value the HTTP protocol cannot carry), ``tls_error`` and
    ``too_large`` (response status line or headers beyond http.client's limits).
    ``message`` is safe to show and log: no secrets, no URL path.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in _ERROR_CODES:
            raise ValueError(f"unknown DeliveryError code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"DeliveryError({self.code!r}, {self.message!r})"


def _quiet_urllib3_request_log() -> None:
    # urllib3 logs every request line, path and query included, at DEBUG. Slack webhook
    # URLs (and some Zapier hook URLs) carry their secret in the path, so that line must
    # not reach the logs even when an operator turns on debug logging.
    pool_log = logging.getLogger("urllib3.connectionpool")
    if pool_log.level < logging.INFO:
        pool_log.setLevel(logging.INFO)


class OutboundClient:
    """Pooled, guarded HTTP client. One per worker process; thread-safe.

    ``max_pool_per_host`` keep-alive connections are kept per destination (scheme, host,
    port); more concurrent requests than that still go out, on connections that are closed
    afterwards.
    """

    def __init__(self, allow_private_networks: bool, max_pool_per_host: int = 64, max_hosts: int = 512) -> None:
        _quiet_urllib3_request_log()
        self.allow_private_networks = allow_private_networks
        self._pools = urllib3.PoolManager(num_pools=max_hosts, maxsize=max_pool_per_host, block=False,
                                          retries=False)
        # Either way a request's head and body go out in one write (gateway.delivery.wire).
        if not allow_private_networks:
            self._pools.pool_classes_by_scheme = {"http": GuardedHTTPConnectionPool,
                                                  "https": GuardedHTTPSConnectionPool}
        else:
            self._pools.pool_classes_by_scheme = {"http": OneWriteHTTPConnectionPool,
                                                  "https": OneWriteHTTPSConnectionPool}
        self._closed = threading.Event()
        self._destinations: dict[str, _Destination] = {}

    def _destination(self, url: str) -> _Destination:
        found = self._destinations.get(url)
        if found is None:
            found = _destination(url)  # raises DeliveryError for a bad URL (not cached: rare)
            if len(self._destinations) >= _TARGET_CACHE:
                self._destinations.clear()
            self._destinations[url] = found
        return found

    def send(self, request: OutgoingRequest, timeout: float) -> Response:
        """Send ``request`` and return the response (any status, 3xx included).

        Raises :class:`DeliveryError` when no response could be had.
        """
        if self._closed.is_set():
            raise RuntimeError("OutboundClient is closed")
        url = self._destination(request.url)
        where = url.where
        headers = dict(request.headers)
        if url.authorization and not any(key.lower() == "authorization" for key in headers):
            headers["Authorization"] = url.authorization
        deadline = time.monotonic() + timeout
        budget = _budget(timeout)
        # The wire may write this request on a kept-alive socket with the timeout it still
        # has, only if that is within this request's own (a pool serves every sink of a host).
        within = REQUEST_TIMEOUT.set(timeout)
        try:
            pool = self._pools.connection_from_host(url.host, port=url.port, scheme=url.scheme)
            raw = pool.urlopen(request.method, url.request_uri, body=request.body, headers=headers,
                               retries=_NO_RETRIES, redirect=False, assert_same_host=False, timeout=budget,
                               preload_content=False, release_conn=False)
        except SsrfRefused as exc:
            raise DeliveryError("ssrf_refused", str(exc)) from None
        except ValueError as exc:
            if isinstance(exc, LocationValueError):
                raise DeliveryError("invalid_url", f"The URL's host {url.host!r} is not valid.") from None
            # http.client refuses header names/values with control characters (CR, LF).
            raise DeliveryError("invalid_request", f"The request to {where} cannot be sent: "
                                f"{_safe_reason(exc)}.") from None
        except _TRANSPORT_ERRORS as exc:
            raise _translate(exc, where, timeout) from None
        finally:
            REQUEST_TIMEOUT.reset(within)
        try:
            body = _read_capped(raw, deadline)
        except _TRANSPORT_ERRORS as exc:
            raw.close()
            raw.release_conn()
            raise _translate(exc, where, timeout) from None
        return Response(status_code=raw.status, headers=dict(raw.headers.itermerged()), body=body)

    def close(self) -> None:
        """Close every pooled connection. The client cannot be used afterwards."""
        self._closed.set()
        self._pools.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_capped(raw: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
    """Read up to MAX_RESPONSE_BYTES, then hand the connection back to the pool: kept alive
    when the body was read to its end, closed when the rest was left unread."""
    chunks: list[bytes] = []
    size = 0
    complete = False
    # With a Content-Length and the body as sent (not decompressed, where the decoder may
    # hold bytes back until the empty read), the body is complete when that many bytes
    # came: the empty read that would say so costs as much again as the read itself.
    counted = raw.length_remaining is not None and "content-encoding" not in raw.headers
    while size < MAX_RESPONSE_BYTES:
        if time.monotonic() > deadline:
            raise ReadTimeoutError(None, None, "response body not complete before the deadline")  # type: ignore[arg-type]
        chunk = raw.read(min(_READ_CHUNK, MAX_RESPONSE_BYTES - size))
        if not chunk:
            complete = True
            break
        chunks.append(chunk)
        size += len(chunk)
        if counted and not raw.length_remaining:
            complete = True
            break
    if not complete:
        # Reading the rest could take long; a fresh connection later is cheaper.
        raw.close()
    raw.release_conn()
    return b"".join(chunks)


def _safe_reason(exc: BaseException) -> str:
    """An exception's text with nothing that could be a header value in it."""
    text = str(exc)
    if "header" in text.lower():
        return "a header name or value contains characters HTTP does not allow"
    return type(exc).__name__


def _translate(exc: Exception, where: str, timeout: float) -> DeliveryError:
    """urllib3/http.client exceptions -> DeliveryError with a message naming only host:port."""
    if isinstance(exc, SsrfRefused):
        return DeliveryError("ssrf_refused", str(exc))
    if isinstance(exc, NameResolutionError):
        return DeliveryError("connect_error", f"Cannot resolve {where.rsplit(':', 1)[0]}.")
    if isinstance(exc, NewConnectionError):  # before ConnectTimeoutError: it subclasses it
        cause = exc.__cause__
        detail = getattr(cause, "strerror", None) or "connection failed"
        return DeliveryError("connect_error", f"Cannot connect to {where}: {detail}.")
    if isinstance(exc, ConnectTimeoutError):
        return DeliveryError("timeout", f"Connecting to {where} took longer than "
                             f"{min(timeout, MAX_CONNECT_TIMEOUT):g} s.")
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return DeliveryError("timeout", f"{where} did not answer within {timeout:g} s.")
    if isinstance(exc, SSLError):
        return DeliveryError("tls_error", f"TLS with {where} failed: {_ssl_reason(exc)}.")
    if isinstance(exc, ProtocolError):
        inner = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(inner, http.client.LineTooLong) or "more than" in str(inner):
            return DeliveryError("too_large", f"{where} answered with a status line or headers beyond "
                                 "the allowed size.")
        if isinstance(inner, TimeoutError):
            return DeliveryError("timeout", f"{where} did not answer within {timeout:g} s.")
        return DeliveryError("connect_error", f"The connection to {where} broke before a complete response "
                             f"({type(inner or exc).__name__}).")
    log.warning("Unexpected error delivering to %s: %s", where, type(exc).__name__)
    return DeliveryError("connect_error", f"Delivering to {where} failed ({type(exc).__name__}).")


def _ssl_reason(exc: SSLError) -> str:
    text = str(exc)
    for known in ("CERTIFICATE_VERIFY_FAILED", "certificate has expired", "Hostname mismatch",
                  "self-signed certificate", "WRONG_VERSION_NUMBER", "unable to get local issuer"):
        if known.lower() in text.lower():
            return known
    return "handshake failed"


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """When a ``Retry-After`` header value says to come back: delay-seconds (``"7"``) or an
    HTTP date. None when absent or unparsable; a date in the past means ``now``.
    ``now`` must be timezone-aware."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if is_ascii_digits(value):
        # An absurd value must not overflow datetime; callers cap it anyway.
        return now + timedelta(seconds=min(int(value), 10 * 365 * 86400))
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" parses naive; HTTP dates are always GMT
        moment = moment.replace(tzinfo=UTC)
    return max(moment, now)


def retry_after(response: Response, cap: float = DEFAULT_MAX_RETRY_AFTER,
                now: datetime | None = None) -> datetime | None:
    """The response's ``Retry-After`` as a time, at most ``cap`` seconds from now; None
    when there is no usable header."""
    current = now or datetime.now(UTC)
    moment = parse_retry_after(response.header("Retry-After"), current)
    if moment is None:
        return None
    return min(moment, current + timedelta(seconds=cap))
