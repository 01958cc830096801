"""The SSRF policy applied when a URL is saved (``destination_refusal``), and through the
plugin API (``SinkContext.check_destination``): the same verdicts as the guard that judges
every connection, said in a sentence for the person who gave the URL."""

from __future__ import annotations

from typing import Any

import pytest
from support.resolver import resolve_names

from gateway import DestinationRefused, SinkContext
from gateway.delivery.ssrf import destination_refusal

HINT = "set delivery.allow_private_networks = true to allow it"


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
    ("https://10.1.2.3/hook", "10.1.2.3 is a private address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("http://[::1]:9000/", "::1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 is an IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://localhost/hook", "localhost resolves to "),
    ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),  # 127.0.0.1, as a number
    # A zone index after an IPv4 address (there is none: IPv4 has no zones) hides nothing.
    ("http://10.0.0.1%eth0/hook", "10.0.0.1%eth0 is a private address"),
])
def test_addresses_the_guard_refuses_are_refused_with_the_reason(url: str, says: str) -> None:
    refusal = destination_refusal(url)
    assert refusal is not None and refusal.startswith(says) and refusal.endswith(HINT)
    assert "/hook" not in refusal and "meta-data" not in refusal  # never the path


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "http://[::1/"])
def test_what_cannot_be_delivered_to_at_all_is_refused(url: str) -> None:
    assert destination_refusal(url) is not None


@pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "http://[2606:4700:4700::1111]/",
                                 "https://name-that-does-not-resolve.invalid/hook"])
def test_public_addresses_and_names_not_resolvable_yet_pass(url: str) -> None:
    # A name that does not resolve today may tomorrow: the guard judges every connection.
    assert destination_refusal(url) is None


@pytest.mark.parametrize(("allow", "refused"), [(False, True), (True, False)])
def test_the_context_applies_the_deployments_setting(make_runtime: Any, allow: bool, refused: bool) -> None:
    context = make_runtime({"delivery": {"allow_private_networks": allow}}).context

    if refused:
        with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1 is a loopback address"):
            context.check_destination("http://127.0.0.1:9/hook")
    else:
        context.check_destination("http://127.0.0.1:9/hook")
    context.check_destination("https://8.8.8.8/hook")


def test_a_context_the_gateway_did_not_hand_out_says_so(redis_client: Any) -> None:
    with pytest.raises(RuntimeError, match="no core services"):
        SinkContext(redis_client, "gw:").check_destination("https://8.8.8.8/")


def test_an_address_with_a_zone_is_judged_by_the_address() -> None:
    refusal = destination_refusal("http://[fe80::1%25eth0]:8080/x")
    assert refusal is not None and "is a link-local address" in refusal


def test_the_smallest_ipv4_compatible_address_is_refused() -> None:
    # ::2 is the IPv4-compatible form of 0.0.0.2 (only :: and ::1 are not such forms).
    refusal = destination_refusal("http://[::2]/x")
    assert refusal is not None and "0.0.0.2" in refusal


@pytest.mark.parametrize(("addresses", "says"), [
    (["10.0.0.1", "8.8.8.8"], None),  # the guard would connect to the public one
    (["8.8.8.8", "10.0.0.1"], None),
    (["fe80::1%2", "10.0.0.1"], "several.test resolves to fe80::1, a link-local address; "),  # the first, no zone
    (["192.168.0.9", "fe80::1%2"], "several.test resolves to 192.168.0.9, a private address; "),
    ([], None),  # nothing to judge yet, like a name that does not resolve
])
def test_a_name_is_refused_only_when_every_address_it_resolves_to_is(
        monkeypatch: pytest.MonkeyPatch, addresses: list[str], says: str | None) -> None:
    resolve_names(monkeypatch, {"several.test": addresses})
    refusal = destination_refusal("https://several.test/hook")
    if says is None:
        assert refusal is None
    else:
        assert refusal == says + HINT
