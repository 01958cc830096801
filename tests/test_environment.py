"""What the process environment sets (gateway/environment.py)."""

from __future__ import annotations

import pytest

from gateway.environment import DEFAULT_MAX_DRAINERS, MAX_DRAINERS, max_drainers


@pytest.mark.parametrize(("value", "expected"), [
    ("3", 3), (" 4 ", 4), ("0", 1),
    ("", DEFAULT_MAX_DRAINERS), ("many", DEFAULT_MAX_DRAINERS), ("-2", DEFAULT_MAX_DRAINERS),
    ("³", DEFAULT_MAX_DRAINERS),  # a digit to str.isdigit(), refused by int(): not a crash at start
])
def test_max_drainers_takes_a_plain_number_else_the_default(monkeypatch: pytest.MonkeyPatch, value: str,
                                                             expected: int) -> None:
    monkeypatch.setenv(MAX_DRAINERS, value)
    assert max_drainers() == expected
