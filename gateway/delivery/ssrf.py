"""SSRF guard: outbound deliveries may only reach public addresses.

A sink URL is admin configuration, but Zapier subscriptions (and anything else that lets a
caller choose a URL) are not, and even an admin's public hostname can be re-pointed in DNS
at ``127.0.0.1`` or a cloud metadata service. So the guard judges the address the socket is
actually connected to, after DNS: :class:`GuardedHTTPConnection` resolves the host itself,
drops every refused address and connects only to what is left, by IP. A DNS answer cannot
get past it, and no packet is ever sent to a refused address.

IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo) are judged by the IPv4
address inside them, because that is where the packets end up.

Ports are not restricted: the guard decides which machines may be reached, and a public
receiver on port 8443 is as legitimate as one on 443. Schemes other than http(s) are
refused by :mod:`gateway.delivery.http_client` before any of this runs.

Where a caller chooses a URL that is stored for later (a Zapier subscription, a sink saved
through an API), :func:`destination_refusal` applies the same policy when it is saved, so
the caller hears "no" at once instead of finding failed deliveries later. It is advice,
not the guard: DNS can change after the check, and every connection is judged again.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from urllib.parse import urlsplit

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from gateway.delivery.wire import OneWriteHTTPConnection, OneWriteHTTPSConnection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_HINT = "set delivery.allow_private_networks = true to allow it"

PRIVATE = "a private address"
DOCUMENTATION = "a documentation address"
RESERVED = "a reserved address"

# Checked in order, first match wins. ipaddress.is_global alone is not enough: on Python
# 3.11 it calls multicast, 192.88.99.0/24 and several IPv6 special ranges "global".
_V4_RANGES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason) for net, reason in (
        ("0.0.0.0/8", "an unspecified ('this network') address"),
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", "a CGNAT (shared address space, 100.64.0.0/10) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", "an IETF protocol assignment address"),
        ("192.0.2.0/24", DOCUMENTATION),
        ("192.88.99.0/24", "a 6to4 relay anycast address"),
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", "a benchmarking address"),
        ("198.51.100.0/24", DOCUMENTATION),
        ("203.0.113.0/24", DOCUMENTATION),
        ("224.0.0.0/4", "a multicast address"),
        ("240.0.0.0/4", RESERVED),  # includes the broadcast address 255.255.255.255
    )
)

_V6_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason) for net, reason in (
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", PRIVATE),  # local-use NAT64
        ("100::/64", RESERVED),  # discard-only
        ("2001:db8::/32", DOCUMENTATION),
        ("3fff::/20", DOCUMENTATION),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# IPv6 forms that carry IPv4 addresses, named with their article for messages.
MAPPED, NAT64, COMPATIBLE, SIX_TO_FOUR, TEREDO = (
    "an IPv4-mapped", "a NAT64", "an IPv4-compatible", "a 6to4", "a Teredo")
# Forms whose packets are delivered to the inner IPv4 address: its verdict is the verdict.
_TRANSLATED = (MAPPED, NAT64)


def _ipv4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _V4_RANGES:
        if ip in network:
            return reason
    if not ip.is_global:
        return "a non-public address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 address(es) an IPv6 transition form carries, with the form's name (and article)."""
    if ip.ipv4_mapped is not None:
        return MAPPED, [ip.ipv4_mapped]
    if ip in _NAT64:
        return NAT64, [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are not IPv4-compatible forms
        return COMPATIBLE, [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return SIX_TO_FOUR, [ip.sixtofour]
    if ip.teredo is not None:
        server, client = ip.teredo
        return TEREDO, [client, server]
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why deliveries must not go to ``ip`` (e.g. ``"a loopback address"``), or None when
    it is a public address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_reason(ip)
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        form, addresses = embedded
        for inner in addresses:
            reason = _ipv4_reason(inner)
            if reason is not None:
                return f"{form} form of {inner}, {reason}"
        if form == COMPATIBLE:  # deprecated since 2006; nothing legitimate uses it
            return "a deprecated IPv4-compatible address"
        if form in _TRANSLATED:
            return None
    for network, reason in _V6_RANGES:
        if ip in network:
            return reason
    if ip.is_reserved:
        return RESERVED
    if not ip.is_global:
        return "a non-public address"
    return None


class SsrfRefused(Exception):
    """A destination resolved only to addresses the guard refuses. The message names the
    host, the address and why, and how to allow it; it never contains the URL's path."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        if host.strip("[]") == address:
            message = f"{address} is {reason}; {ALLOW_HINT}"
        else:
            message = f"{host} resolves to {address}, {reason}; {ALLOW_HINT}"
        super().__init__(message)


def destination_refusal(url: str) -> str | None:
    """Why the guard would refuse to deliver to ``url``, as a sentence for the person who
    gave it ("127.0.0.1 is a loopback address; set ..."), or None when it would not.

    An address in the URL is judged as it is. A host name is resolved, and refused when
    every address it resolves to is refused (as the guard would: it connects only to the
    allowed ones). A name that does not resolve now is not refused: DNS may not be set up
    yet, and the guard judges the address at every delivery anyway. Call it only when
    ``delivery.allow_private_networks`` is off."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "it is not a valid URL"
    host = (parts.hostname or "").strip("[]")
    if parts.scheme not in ("http", "https") or not host:
        return "only http and https URLs with a host can be delivered to"
    try:
        literal: IPAddress | None = _parse_ip(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        reason = refusal_reason(literal)
        return str(SsrfRefused(host, host, reason)) if reason else None
    try:
        # The port only makes getaddrinfo answer with TCP addresses; which port changes none of
        # them, and they are what is judged (so mutating it is equivalent: no mutate).
        default_port = 443 if parts.scheme == "https" else 80  # pragma: no mutate
        infos = socket.getaddrinfo(host, port or default_port, type=socket.SOCK_STREAM)  # pragma: no mutate
    except (socket.gaierror, UnicodeError):
        return None
    refused: SsrfRefused | None = None
    for *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        reason = refusal_reason(_parse_ip(address))
        if reason is None:
            return None
        refused = refused or SsrfRefused(host, address, reason)
    return str(refused) if refused is not None else None


def _parse_ip(sockaddr_host: str) -> IPAddress:
    return ipaddress.ip_address(sockaddr_host)


def guarded_create_connection(conn: HTTPConnection) -> socket.socket:
    """Resolve ``conn``'s host, drop refused addresses, connect to the first allowed one.

    Mirrors urllib3's ``create_connection`` + ``_new_conn`` (same options, same urllib3
    exceptions for DNS failures, timeouts and refused connections), plus the guard.
    """
    host = conn._dns_host.strip("[]")  # urllib3 sets it
    try:
        infos = socket.getaddrinfo(host, conn.port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    refused: SsrfRefused | None = None
    error: OSError | None = None
    for family, socktype, proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        reason = refusal_reason(_parse_ip(address))
        if reason is not None:
            refused = refused or SsrfRefused(conn.host, address.split("%", 1)[0], reason)
            continue
        sock = socket.socket(family, socktype, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
        except OSError as exc:  # like urllib3: try the next address, report the last failure
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from error
    if error is not None:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error
    if refused is not None:
        raise refused
    raise NewConnectionError(conn, "Failed to establish a new connection: getaddrinfo returned no address")


class GuardedHTTPConnection(OneWriteHTTPConnection):
    """An urllib3 connection that only connects to public addresses."""

    def _new_conn(self) -> socket.socket:
        return guarded_create_connection(self)


class GuardedHTTPSConnection(OneWriteHTTPSConnection):
    """The TLS variant: the guard runs before the handshake (no byte reaches a refused host)."""

    def _new_conn(self) -> socket.socket:
        return guarded_create_connection(self)


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection
