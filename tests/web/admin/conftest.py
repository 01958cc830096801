"""Fixtures of the console's tests: a local HTTP sink and signed-in test clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from support.console import sign_in
from support.servers import SinkServer


@pytest.fixture
def sink() -> Iterator[SinkServer]:
    """A real HTTP receiver on 127.0.0.1 (answers 200 unless scripted)."""
    with SinkServer() as server:
        yield server


@pytest.fixture
def signed_in(make_client: Callable[..., Any]) -> Callable[..., Any]:
    """``signed_in(config, plugins)``: a test client for ``config``, signed in to the console."""

    def build(config: dict[str, Any], plugins: Sequence[Any] = ()) -> Any:
        client = make_client(config, plugins=list(plugins))
        assert sign_in(client).status_code == 302
        return client

    return build
