"""Fixtures for the command line's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No configuration from the environment: no GATEWAY_CONFIG or WEBHOOK_SECRET, and the
    working directory is the test's own (no ./gateway.toml unless the test writes one)."""
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    monkeypatch.chdir(tmp_path)
