"""``gateway config check`` reports what it finds of the Redis shape docs/deployment.md
describes: the sentinels, the master they name, its replicas, and whether the durability
setting can be met (a real master, replica and three sentinels on loopback)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sentinel import RedisSet, redis_set


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSet]:
    with redis_set(tmp_path_factory.mktemp("check"), data_args=("--min-replicas-to-write", "1")) as made:
        yield made


def check(tmp_path: Path, redis_url: str, *extra: str, **gateway: object) -> subprocess.CompletedProcess[str]:
    lines = [f'redis_url = "{redis_url}"', f'data_dir = "{tmp_path / "data"}"']
    lines += [f"{key} = {value!r}".replace("'", '"') for key, value in gateway.items()]
    config = tmp_path / "gateway.toml"
    config.write_text("[gateway]\n" + "\n".join(lines) + "\n")
    return subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(config), *extra],
                          capture_output=True, text=True, timeout=120)


def test_the_sentinel_shape_is_confirmed(sentinels: RedisSet, tmp_path: Path) -> None:
    result = check(tmp_path, sentinels.url(), durability="replicated", durability_replicas=1)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    host, port = sentinels.master_address() or ("", 0)
    assert out.count("ok: sentinel 127.0.0.1:") == 3
    assert f"master 'gw-master' at {host}:{port}" in out
    assert "ok: the master answers" in out
    assert "ok: 1 replica(s) connected" in out and "online" in out
    assert "ok: appendonly yes" in out and "ok: min-replicas-to-write 1" in out
    assert "durability: replicated (a write is acknowledged once 1 replica(s) confirmed it" in out
    assert "warning: 1 replica(s) online, 1 needed: losing one machine stops writes" in out


def test_problems_exit_1_and_say_what_is_wrong(sentinels: RedisSet, tmp_path: Path) -> None:
    # One sentinel that is not there, a master name nobody knows, more replicas than exist.
    url = sentinels.url().replace("://", "://127.0.0.1:1,", 1)
    result = check(tmp_path, url, durability="replicated", durability_replicas=2)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "warning: 3 of 4 sentinels answer" in result.stdout
    assert "error: 1 replica(s) online, 2 needed: every write would answer 503 replication_timeout" in result.stdout
    unknown = check(tmp_path, sentinels.url().replace("/gw-master/", "/nobody/"))
    assert unknown.returncode == 1
    assert unknown.stdout.count("does not know master 'nobody'") == 3
    assert "error: the master does not answer" in unknown.stdout


def test_local_durability_and_offline(sentinels: RedisSet, tmp_path: Path) -> None:
    result = check(tmp_path, sentinels.url())
    assert result.returncode == 0
    assert "durability: local" in result.stdout and "a failover can lose the last writes" in result.stdout
    offline = check(tmp_path, "redis+sentinel://127.0.0.1:1/gw-master/0", "--offline")
    assert offline.returncode == 0 and "redis:" not in offline.stdout


def test_a_plain_url_to_a_replica_is_an_error(sentinels: RedisSet, tmp_path: Path) -> None:
    replica = sentinels.replicas()[0]
    result = check(tmp_path, f"redis://127.0.0.1:{replica.port}/0")
    assert result.returncode == 1
    assert "error: the server answers as a slave, not a master" in result.stdout


def test_the_deployment_example_is_a_valid_config() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "gateway.sentinel.toml"
    env = {**os.environ, "REDIS_PASSWORD": "pw", "WEBHOOK_SECRET": "s",
           "GATEWAY_ADMIN_TOKEN": "admin-token-1-0123456789abcdef01", "CRM_WEBHOOK_SECRET": "crm"}
    result = subprocess.run([sys.executable, "-m", "gateway", "config", "check", "--offline", str(example)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 1 sink ")
