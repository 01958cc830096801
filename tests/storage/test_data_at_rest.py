"""The data directory holds customers' tickets and sinks' credentials: only its owner may
read it (0700; files 0600), whatever the umask, and an existing open one is narrowed."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support.processes import wait_until

from gateway.admin_token import read_or_create_token
from gateway.storage.embedded import EmbeddedRedis


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would make everything world-readable (0022 is the usual one)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (itself included) and its permission bits, e.g. ``"0600"``."""
    found = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for entry in root.rglob("*"):
        found[str(entry.relative_to(root))] = f"{stat.S_IMODE(entry.lstat().st_mode):04o}"
    return found


def test_embedded_redis_keeps_its_data_private(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "data"
    server = EmbeddedRedis(data).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.hset("gw:sink:crm", "url", "https://user:hunter2@crm.example.com/hook")
        # appendonly.aof (Redis 6), or files in appendonlydir/ (Redis 7)
        wait_until(lambda: any(b"hunter2" in f.read_bytes() for f in data.rglob("*.aof*") if f.is_file()),
                   "the append-only file to hold the write")
        client.close()
    finally:
        server.stop()
    found = modes(data)
    files = {name: mode for name, mode in found.items() if (data / name).is_file()}
    assert any(".aof" in name for name in files) and "redis.log" in files
    assert set(files.values()) == {"0600"}, files
    directories = {name: mode for name, mode in found.items() if (data / name).is_dir()}
    assert set(directories.values()) == {"0700"}, directories


def test_an_existing_open_data_directory_is_narrowed_with_a_log_line(tmp_path: Path, open_umask: None,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    with caplog.at_level(logging.WARNING, logger="gateway.data_dir"):
        read_or_create_token(data / "admin_token")
    assert modes(data) == {".": "0700", "admin_token": "0600"}
    assert [r.getMessage() for r in caplog.records] == [
        f"data directory {data} was mode 0755 (others could read tickets and sink credentials); set it to 0700"]
    caplog.clear()
    # Once private, nothing more is said.
    server = EmbeddedRedis(data).start()
    server.stop()
    assert caplog.records == []
    assert modes(data)["."] == "0700"
