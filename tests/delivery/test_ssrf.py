"""The SSRF guard: the address filter on its own, then through the real client against a
real local server (which must never even see a connection while the guard is on)."""

from __future__ import annotations

import ipaddress
import shutil
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.processes import free_port
from support.resolver import resolve_names
from support.servers import LocalServer, answer, post, self_signed_tls

from gateway.delivery import ssrf
from gateway.delivery.http_client import DeliveryError, OutboundClient
from gateway.delivery.ssrf import GuardedHTTPConnection, GuardedHTTPSConnectionPool, refusal_reason

REFUSED = [
    # IPv4
    ("127.0.0.1", "a loopback address"),
    ("127.255.0.9", "a loopback address"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("172.31.255.255", "a private address"),
    ("192.168.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"),  # cloud metadata
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "a multicast address"),
    ("239.255.255.250", "a multicast address"),
    ("240.0.0.1", "a reserved address"),
    ("255.255.255.255", "a reserved address"),
    ("192.0.2.10", "a documentation address"),
    ("198.51.100.7", "a documentation address"),
    ("203.0.113.99", "a documentation address"),
    ("198.18.0.1", "a benchmarking address"),
    ("192.0.0.8", "an IETF protocol assignment address"),
    ("192.88.99.1", "a 6to4 relay anycast address"),
    # IPv6
    ("::1", "a loopback address"),
    ("::", "an unspecified address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%2", "a link-local address"),
    ("fec0::1", "a site-local address"),
    ("fc00::1", "a unique-local (private) address"),
    ("fd12:3456::1", "a unique-local (private) address"),
    ("ff02::1", "a multicast address"),
    ("ff0e::1", "a multicast address"),
    ("2001:db8::1", "a documentation address"),
    ("100::1", "a reserved address"),
    ("64:ff9b:1::1", "a private address"),
    # IPv6 forms that carry an IPv4 address are judged by that address
    ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("::ffff:10.0.0.1", "an IPv4-mapped form of 10.0.0.1, a private address"),
    ("::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, a link-local address"),
    ("::127.0.0.1", "an IPv4-compatible form of 127.0.0.1, a loopback address"),
    ("::8.8.8.8", "a deprecated IPv4-compatible address"),
    ("64:ff9b::7f00:1", "a NAT64 form of 127.0.0.1, a loopback address"),
    ("2002:7f00:1::1", "a 6to4 form of 127.0.0.1, a loopback address"),
    ("2002:a9fe:a9fe::", "a 6to4 form of 169.254.169.254, a link-local address"),
    # Teredo: server 65.54.227.120, client (obfuscated) 192.168.0.1
    ("2001:0:4136:e378:8000:63bf:3f57:fffe", "a Teredo form of 192.168.0.1, a private address"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "a non-public address"),  # public client 8.8.8.8
]

ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e",
           "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None and reason in found


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@given(st.ip_addresses(v=4))
def test_every_non_global_ipv4_address_is_refused(ip: ipaddress.IPv4Address) -> None:
    if not ip.is_global or ip.is_multicast:
        assert refusal_reason(ip) is not None


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_gets_the_same_verdict(ip: ipaddress.IPv4Address) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert (refusal_reason(mapped) is None) == (refusal_reason(ip) is None)


@given(st.ip_addresses(v=6))
def test_every_non_global_ipv6_address_is_refused(ip: ipaddress.IPv6Address) -> None:
    if not ip.is_global and ip.ipv4_mapped is None and ip.sixtofour is None:
        assert refusal_reason(ip) is not None


@pytest.fixture
def guarded() -> Iterator[OutboundClient]:
    with OutboundClient(allow_private_networks=False) as c:
        yield c


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real local server answering 200 "ok" on /hook."""
    local = LocalServer({"/hook": answer(200, b"ok")})
    yield local
    local.stop()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("host", "message"), [
    ("127.0.0.1", "127.0.0.1 is a loopback address; set delivery.allow_private_networks = true to allow it"),
    ("localhost", ("localhost resolves to 127.0.0.1, a loopback address; "
                   "set delivery.allow_private_networks = true to allow it")),
    ("[::ffff:127.0.0.1]", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
])
def test_guard_refuses_before_connecting(guarded: OutboundClient, server: LocalServer, host: str,
                                         message: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post(f"http://{host}:{server.port}/hook"), timeout=5)
    assert caught.value.code == "ssrf_refused"
    assert message in caught.value.message
    assert server.connections == 0  # not even a TCP handshake reached the refused address


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_guard_refuses_ipv6_loopback(guarded: OutboundClient) -> None:
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post("http://[::1]:9/hook"), timeout=5)
    assert caught.value.code == "ssrf_refused"
    assert caught.value.message.startswith("::1 is a loopback address")


def test_guard_also_covers_https(guarded: OutboundClient) -> None:
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post("https://169.254.169.254/latest/meta-data/"), timeout=5)
    assert caught.value.code == "ssrf_refused"
    assert "meta-data" not in caught.value.message


def test_allow_private_networks_reaches_the_local_server(server: LocalServer) -> None:
    with OutboundClient(allow_private_networks=True) as open_client:
        for host in ("127.0.0.1", "localhost"):
            assert open_client.send(post(server.url("/hook", host=host)), timeout=10).body == b"ok"
    assert server.paths == ["/hook", "/hook"]


@pytest.fixture
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the guard's policy pass 127.0.0.1 alone, so the guarded connection path itself
    (resolve, filter, connect, TLS) can be exercised against a local server. Only the
    policy function is replaced; DNS, sockets and TLS stay real."""
    policy = ssrf.refusal_reason
    monkeypatch.setattr(ssrf, "refusal_reason", lambda ip: None if str(ip) == "127.0.0.1" else policy(ip))


@pytest.mark.usefixtures("loopback_allowed")
def test_guarded_connections_deliver_and_are_kept_alive(guarded: OutboundClient, server: LocalServer) -> None:
    for host in ("127.0.0.1", "localhost", "127.0.0.1"):
        assert guarded.send(post(server.url("/hook", host=host)), timeout=10).body == b"ok"
    assert server.connections == 2  # one per (host, port) pool: 127.0.0.1 and localhost
    with pytest.raises(DeliveryError) as caught:  # the rest of the policy still holds
        guarded.send(post("http://[::ffff:127.0.0.2]:9/hook"), timeout=5)
    assert caught.value.code == "ssrf_refused"


@pytest.mark.usefixtures("loopback_allowed")
def test_guarded_tls_connections_verify_the_certificate(tmp_path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    context, cert = self_signed_tls(tmp_path)
    tls_server = LocalServer({"/hook": answer(200, b"over tls")}, tls=context)
    try:
        for host in ("127.0.0.1", "localhost"):
            pool = GuardedHTTPSConnectionPool(host, tls_server.port, ca_certs=str(cert), cert_reqs="CERT_REQUIRED")
            response = pool.urlopen("POST", "/hook", body=b"{}", retries=False)
            assert (response.status, response.data) == (200, b"over tls")
            pool.close()
    finally:
        tls_server.stop()


@pytest.mark.usefixtures("loopback_allowed")
def test_a_guarded_connection_to_an_allowed_address_that_refuses_is_a_connect_error(guarded: OutboundClient) -> None:
    with pytest.raises(DeliveryError) as caught:  # a port nothing listens on
        guarded.send(post(f"http://127.0.0.1:{free_port()}/hook"), timeout=5)
    assert caught.value.code == "connect_error"
    assert "Connection refused" in caught.value.message


def test_a_guarded_connection_to_a_name_that_does_not_resolve_is_a_connect_error(guarded: OutboundClient) -> None:
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post("http://no-such-host.invalid/hook"), timeout=5)
    assert caught.value.code == "connect_error"
    assert "no-such-host.invalid" in caught.value.message


# -- what the guarded connection's socket is, and names with several addresses ---------------------

@pytest.mark.usefixtures("loopback_allowed")
def test_a_guarded_socket_has_urllib3s_options_and_the_connect_timeout(server: LocalServer) -> None:
    # As urllib3's own connection: TCP_NODELAY (a request goes out in one segment, at once),
    # and the timeout bounds the connect (an address that drops packets would hang without).
    timed = GuardedHTTPConnection("127.0.0.1", server.port, timeout=7.5)
    untimed = GuardedHTTPConnection("127.0.0.1", server.port)  # no timeout: the socket's default
    try:
        timed.connect()
        assert timed.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert timed.sock.gettimeout() == 7.5
        untimed.connect()
        assert untimed.sock.gettimeout() == socket.getdefaulttimeout()
    finally:
        timed.close()
        untimed.close()


@pytest.fixture
def two_loopbacks_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy passes 127.0.0.1 and 127.0.0.2 (nothing listens on the second: the local
    servers bind 127.0.0.1), the rest of it holds."""
    policy = ssrf.refusal_reason
    monkeypatch.setattr(ssrf, "refusal_reason",
                        lambda ip: None if str(ip) in ("127.0.0.1", "127.0.0.2") else policy(ip))


@pytest.mark.usefixtures("two_loopbacks_allowed")
@pytest.mark.parametrize("first", ["10.0.0.1", "169.254.169.254", "127.0.0.2"])
def test_a_name_whose_first_address_is_refused_or_refuses_is_delivered_to_the_next(
        guarded: OutboundClient, server: LocalServer, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    # A refused address is skipped, never connected to; an allowed one that refuses the
    # connection is given up for the next, as urllib3 does.
    asked = resolve_names(monkeypatch, {"several.test": [first, "127.0.0.1"]})
    assert guarded.send(post(server.url("/hook", host="several.test")), timeout=10).body == b"ok"
    assert asked == ["several.test"] and server.connections == 1


@pytest.mark.usefixtures("two_loopbacks_allowed")
def test_a_name_of_refused_addresses_only_is_refused_naming_the_first(
        guarded: OutboundClient, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_names(monkeypatch, {"inside.test": ["fe80::1%2", "10.0.0.1"]})
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post(f"http://inside.test:{server.port}/hook"), timeout=5)
    assert caught.value.code == "ssrf_refused"
    assert caught.value.message.startswith("inside.test resolves to fe80::1, a link-local address; ")
    assert server.connections == 0


@pytest.mark.usefixtures("two_loopbacks_allowed")
def test_a_name_whose_allowed_addresses_all_refuse_is_a_connect_error_not_a_refusal(
        guarded: OutboundClient, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_names(monkeypatch, {"down.test": ["10.0.0.1", "127.0.0.2"]})
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post(f"http://down.test:{free_port()}/hook"), timeout=5)
    assert caught.value.code == "connect_error"
    assert "Connection refused" in caught.value.message


def test_a_name_that_resolves_to_no_address_is_a_connect_error(
        guarded: OutboundClient, monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_names(monkeypatch, {"empty.test": []})
    with pytest.raises(DeliveryError) as caught:
        guarded.send(post("http://empty.test/hook"), timeout=5)
    assert caught.value.code == "connect_error"
    assert caught.value.message.startswith("Cannot connect to empty.test:80")
