"""Fixtures for the process-killing tests: every process a test starts is stopped after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.processes import KillableProcess
from support.servers import Destination


@pytest.fixture
def procs() -> Iterator[list[KillableProcess]]:
    """Append every started :class:`KillableProcess` here; all are stopped (process groups killed) at the end."""
    started: list[KillableProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def destination() -> Iterator[Callable[..., Destination]]:
    """``destination(delay=(lo, hi))``: a recording receiver; closed at the end."""
    made: list[Destination] = []

    def make(**kwargs: Any) -> Destination:
        made.append(Destination(**kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for dest in made:
            dest.go_down()


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Where the processes' output goes (kept with the test's tmp_path for post-mortems)."""
    path = tmp_path / "logs"
    path.mkdir()
    return path
