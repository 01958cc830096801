"""A resolver double: names of our choosing resolve to addresses of our choosing, in order.

This machine has no DNS, and /etc/hosts gives a name one address per family, so a name
resolving to several addresses (a refused one first, or an allowed one that refuses the
connection first) cannot be had for real. Only ``socket.getaddrinfo`` is replaced, and only
for the names given (every other name resolves for real); the connections the code under
test then makes to the addresses are real."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

import pytest


def resolve_names(monkeypatch: pytest.MonkeyPatch, names: Mapping[str, Sequence[str]]) -> list[str]:
    """Make each of ``names`` resolve to its addresses (IPv4 or IPv6, a zone index allowed:
    ``fe80::1%2``), in that order, as getaddrinfo answers for TCP. Returns the names asked,
    in order, so a test can see the code resolved what it should."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
                    flags: int = 0) -> list[tuple[Any, ...]]:
        if host not in names:
            return real(host, port, family, type, proto, flags)
        asked.append(host)
        answers: list[tuple[Any, ...]] = []
        for address in names[host]:
            if ":" in address:
                scope = int(address.partition("%")[2] or 0)
                answers.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                (address, int(port or 0), 0, scope)))
            else:
                answers.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 0))))
        return answers

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked
