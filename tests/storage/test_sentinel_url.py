"""``redis+sentinel://`` URLs: how they read, how a mistake is reported, and that a client made
from one finds the master through real sentinels and follows it when another node is
promoted (a real master, replica and three sentinels on loopback)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from support.sentinel import RedisNode, RedisSet, redis_set

from gateway.redact import without_password
from gateway.storage.connection import (
    RedisUrlError,
    SentinelUrl,
    check_redis_url,
    connect,
    master_moved,
    parse_sentinel_url,
)
from gateway.storage.direct import DirectScript
from gateway.testing import wait_until


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSet]:
    with redis_set(tmp_path_factory.mktemp("sentinels")) as made:
        yield made


# -- reading the URL -------------------------------------------------------------------------------

def test_the_full_form() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://gw:s%40cret@10.0.0.1:26379,sentinel-b,[fd00::3]:26380/gateway-main/2"
        "?sentinel_password=sp&sentinel_username=watcher")
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26379), ("fd00::3", 26380)), master_name="gateway-main",
        db=2, username="gw", password="s@cret", sentinel_username="watcher", sentinel_password="sp")
    assert parsed.connection_kwargs() == {"db": 2, "username": "gw", "password": "s@cret"}
    assert parsed.sentinel_kwargs()["password"] == "sp"
    assert parsed.describe() == "redis+sentinel://10.0.0.1:26379,sentinel-b:26379,[fd00::3]:26380/gateway-main/2"


def test_defaults_and_tls() -> None:
    parsed = parse_sentinel_url("rediss+sentinel://:pw@s1/mymaster?ssl_ca_certs=/etc/ca.pem")
    assert (parsed.sentinels, parsed.master_name, parsed.db, parsed.username, parsed.password) == (
        (("s1", 26379),), "mymaster", 0, None, "pw")
    assert parsed.tls and parsed.tls_options == {"ssl_ca_certs": "/etc/ca.pem"}
    assert parsed.connection_kwargs()["ssl_ca_certs"] == "/etc/ca.pem"
    assert parsed.sentinel_kwargs()["ssl"] is True


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://s1:26379,s2:26379", "names no master"),
    ("redis+sentinel://s1:26379/", "names no master"),
    ("redis+sentinel://s1:263x9/m/0", "invalid port '263x9'"),
    ("redis+sentinel://s1:70000/m/0", "invalid port '70000'"),
    ("redis+sentinel://s1:²/m/0", "invalid port '²'"),
    ("redis+sentinel://s1/m/³", "only a database number"),
    ("redis+sentinel://s1,,s2/m/0", "empty sentinel address"),
    ("redis+sentinel://s1/m/zero", "only a database number"),
    ("redis+sentinel://s1/m/0/extra", "only a database number"),
    ("redis+sentinel://s1/m/0?socket_timeout=1", "Unknown option 'socket_timeout'"),
    ("redis+sentinel://s1/m/0?ssl_ca_certs=/ca.pem", "need the rediss+sentinel:// scheme"),
])
def test_mistakes_are_explained(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message.replace("+", r"\+").replace("?", r"\?")):
        check_redis_url(url)


def test_plain_urls_still_work_and_others_are_refused() -> None:
    for url in ("redis://localhost:6379/0", "rediss://:pw@redis.internal/1", "unix:///tmp/redis.sock?db=0"):
        check_redis_url(url)
    with pytest.raises(RedisUrlError, match="redis\\+sentinel://"):
        check_redis_url("http://redis.internal:6379/0")


def test_passwords_stay_out_of_banners() -> None:
    shown = without_password("redis+sentinel://gw:hunter2@s1:26379,s2:26379/m/0?sentinel_password=topsecret")
    assert "hunter2" not in shown and "topsecret" not in shown
    assert shown == "redis+sentinel://gw:***@s1:26379,s2:26379/m/0?sentinel_password=***"


def test_config_check_names_the_field_and_hides_the_password(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nredis_url = "redis+sentinel://:hunter2@s1:26379/"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", "config", "check", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "gateway.redis_url: The Sentinel URL names no master" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


# -- real sentinels --------------------------------------------------------------------------------

def test_a_client_finds_the_master_through_the_sentinels(sentinels: RedisSet) -> None:
    client = connect(sentinels.url())
    assert client.info("replication")["role"] == "master"
    client.set("found", "yes")
    assert sentinels.master().client().get("found") == b"yes"


def test_a_dead_sentinel_is_skipped(sentinels: RedisSet) -> None:
    # The first sentinel in the URL is not there at all: the next one answers.
    url = sentinels.url().replace("://", "://127.0.0.1:1,", 1)
    assert connect(url).ping()


def test_clients_follow_the_master_when_the_sentinels_promote_a_replica(sentinels: RedisSet) -> None:
    pooled = connect(sentinels.url())
    direct = DirectScript(pooled, "return redis.call('INCR', 'followed')")
    before = direct([])
    assert pooled.get("followed") == str(before).encode()
    old = sentinels.master()
    with sentinels.sentinels[0].client() as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", sentinels.master_name)
    new = sentinels.wait_for_new_master(old)
    wait_until(lambda: _role(old) == "slave", "the sentinels to demote the old master")
    # Both clients still hold connections to the old master, now a replica: the first write
    # on each may fail (the connection is dropped, never left stuck there), the next goes
    # to the new master.
    after = _first_success(lambda: direct([]))
    pooled_after = _first_success(lambda: pooled.incr("followed"))
    assert pooled_after == after + 1
    with new.client() as client:
        assert int(client.get("followed") or 0) == pooled_after
    assert connect(sentinels.url()).info("replication")["role"] == "master"


def _first_success(write: Callable[[], int]) -> int:
    for _ in range(3):
        try:
            return write()
        except redis.ConnectionError:
            continue
    raise AssertionError("three writes in a row failed after the failover")


def _role(node: RedisNode) -> str:
    try:
        with node.client() as client:
            return str(client.info("replication")["role"])
    except redis.RedisError:
        return "?"


def test_a_script_that_writes_on_a_replica_reads_as_the_master_moved(sentinels: RedisSet) -> None:
    replica = next(node for node in sentinels.data if node.address != sentinels.master_address())
    with replica.client() as client, pytest.raises(redis.ResponseError) as raised:
        client.eval("return redis.call('SET', 'x', '1')", 0)
    assert master_moved(raised.value)
    # Through the gateway's client, the same reply drops the connection: a ConnectionError.
    follower = connect(f"redis://127.0.0.1:{replica.port}/0")
    with pytest.raises(redis.ConnectionError, match="master moved"):
        follower.eval("return redis.call('SET', 'x', '1')", 0)
    assert not master_moved(redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"))
