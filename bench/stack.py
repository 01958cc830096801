"""The parts a bench run stands up: a dedicated embedded Redis (AOF on, as in production),
bench sinks, the gateway's web server and worker processes, the hello-world baseline.

One :class:`Stack` per run; everything it starts is stopped when the run ends. Servers are
started side by side (their start-ups overlap) and shared by name: scenarios that load the
same server with the same configuration (hello-world, ``gateway web`` with one fast sink)
use one process, started and warmed up once, rather than each its own.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import redis
import requests
import tomli_w

from bench import load
from bench.procs import PYTHON, VENV_BIN, Processes, cpu_seconds, free_port, http_ok, read_port, wait_until
from gateway.publish.plugin_services import provide
from gateway.runtime import Runtime
from gateway.storage.connection import EmbeddedRedis, connect
from gateway.storage.embedded import redis_server_binary

SECRET = "bench-secret-3f9a"
WEB_WORKERS = 2
GATEWAY = str(VENV_BIN / "gateway")
WARM_UP_S = 1.0
"""How long a new server is loaded before it is measured (imports, pools, the Lua script
cached), unless the run says otherwise (the quick run: half a second)."""
WARM_UP_CONNECTIONS = 16


def runtime_for(config: Path | str) -> Runtime:
    """The gateway runtime of ``config`` for work done in the bench's own process (pre-loading
    events, creating tickets), on the bench Redis, wired as the web app and the CLI wire theirs
    (:func:`gateway.publish.plugin_services.provide`: plugin services, system events)."""
    return provide(Runtime.from_config(config, start_embedded=False))


@dataclasses.dataclass
class Server:
    """A running web server of the run (``gateway web``, hello-world, the floor)."""

    name: str
    command: tuple[str, ...]
    base_url: str
    proc: subprocess.Popen[bytes]
    warm: bool = False

    @property
    def url(self) -> str:
        """Its receive endpoint."""
        return self.base_url + "/api/webhooks/receive"


@dataclasses.dataclass
class SinkHandle:
    """A running bench sink (``bench/sink.py``)."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]

    def _get(self, path: str) -> dict[str, Any]:
        return requests.get(self.url.rsplit("/", 1)[0] + path, timeout=30).json()

    def counts(self) -> dict[str, Any]:
        """Deliveries, requests, first and last arrival (epoch s)."""
        return self._get("/_count")

    def stats(self) -> dict[str, Any]:
        """Everything, including each latency (ms)."""
        return self._get("/_stats")

    def reset(self) -> None:
        requests.post(self.url.rsplit("/", 1)[0] + "/_reset", timeout=10)

    def wait_for(
        self, deliveries: int, timeout: float, senders: Sequence[subprocess.Popen[bytes]] = ()
    ) -> dict[str, Any]:
        """Counts once the sink has seen ``deliveries``; RuntimeError after ``timeout`` s,
        or as soon as every one of ``senders`` (the processes doing the work) has exited."""
        seen: dict[str, Any] = {}

        def enough() -> bool:
            seen.update(self.counts())
            if seen["deliveries"] >= deliveries:
                return True
            if senders and all(p.poll() is not None for p in senders):
                codes = ", ".join(str(p.returncode) for p in senders)
                raise RuntimeError(
                    f"the processes sending to sink {self.name} exited ({codes}) after "
                    f"{seen['deliveries']} of {deliveries} deliveries; see their logs"
                )
            return False

        try:
            wait_until(enough, f"{deliveries} deliveries at sink {self.name}", timeout, interval=0.2)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} (seen {seen.get('deliveries')})") from None
        return seen


@dataclasses.dataclass(frozen=True)
class Drain:
    """How a backlog drained into a sink: the rate from the sink's first to its last
    arrival, and CPU time per delivery of the senders, Redis and the sink over that span
    (so process start-up counts for neither the rate nor the CPU)."""

    rps: float
    duplicates: int
    cpu_us: dict[str, float]

    @property
    def cpu_total_us(self) -> float:
        return sum(self.cpu_us.values())


def watch_drain(
    stack: Stack, sink: SinkHandle, count: int, senders: list[subprocess.Popen[bytes]], timeout: float
) -> Drain:
    """Wait for ``count`` deliveries at ``sink`` (sent by the processes ``senders``)."""
    parts = {"senders": [p.pid for p in senders], "redis": [stack.redis_pid], "sink": [sink.proc.pid]}
    first = sink.wait_for(1, timeout, senders)
    before = {name: cpu_seconds(*pids) for name, pids in parts.items()}
    seen = sink.wait_for(count, timeout, senders)
    after = {name: cpu_seconds(*pids) for name, pids in parts.items()}
    measured = max(1, seen["deliveries"] - first["deliveries"])
    span = seen["last"] - seen["first"]
    return Drain(
        rps=round((count - 1) / span, 1) if span > 0 else 0.0,
        duplicates=sink.stats()["duplicates"],
        cpu_us={name: round(1e6 * (after[name] - before[name]) / measured) for name in parts},
    )


class Stack:
    """Redis, sinks, web servers and workers of one bench run."""

    def __init__(self, run_dir: Path, warm_up_s: float = WARM_UP_S) -> None:
        self.run_dir = run_dir
        self.warm_up_s = warm_up_s
        run_dir.mkdir(parents=True, exist_ok=True)
        self.redis_server = EmbeddedRedis(run_dir / "redis", appendonly=True, fsync="everysec")
        self.procs = Processes(run_dir)
        self.redis: redis.Redis | None = None
        self.servers: dict[str, Server] = {}

    def __enter__(self) -> Self:
        self.redis_server.start()
        self.redis = connect(self.redis_server.url)
        return self

    def __exit__(self, *exc: object) -> None:
        # Nothing is measured any more: SIGINT, gunicorn's quick shutdown (0.9 s for a gateway
        # web here, against 1.5 s for SIGTERM, its graceful one). The other children stop on
        # SIGINT as on SIGTERM (the sinks, redis-server, rq's warm shutdown).
        self.procs.stop_all(signal.SIGINT)
        if self.redis is not None:
            self.redis.close()
        self.redis_server.stop()

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    @property
    def redis_pid(self) -> int:
        """The bench's redis-server process (for its CPU time)."""
        assert self.redis_server.process is not None
        return self.redis_server.process.pid

    def flush(self) -> None:
        """Empty Redis between scenarios, so one's backlog cannot slow the next."""
        assert self.redis is not None
        self.redis.flushall()

    def start_replicated_redis(self) -> str:
        """A master and one replica on loopback TCP (replication needs TCP; AOF on both, as
        the embedded one): the master's ``redis://`` URL. Stopped with the run."""
        master_port, replica_port = free_port(), free_port()
        for name, port, extra in (("redis-master", master_port, []),
                                  ("redis-replica", replica_port, ["--replicaof", "127.0.0.1", str(master_port)])):
            directory = self.run_dir / name
            directory.mkdir(exist_ok=True)
            self.procs.start(name, [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                                    "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec",
                                    "--save", "", *extra])
        master = redis.Redis("127.0.0.1", master_port, socket_connect_timeout=1, socket_timeout=5)

        def replica_online() -> bool:
            try:
                info = master.info("replication")
            except redis.RedisError:
                return False
            return isinstance(info.get("slave0"), dict) and info["slave0"].get("state") == "online"

        wait_until(replica_online, "the bench replica to sync", timeout=60)
        master.close()
        return f"redis://127.0.0.1:{master_port}/0"

    # -- sinks -----------------------------------------------------------------------
    def start_sink(self, name: str, delay: float = 0.0, hang: bool = False) -> SinkHandle:
        """A bench sink (``bench/sink.py``)."""
        return self.start_sinks({name: {"delay": delay, "hang": hang}})[name]

    def start_sinks(self, wanted: Mapping[str, Mapping[str, float | bool]]) -> dict[str, SinkHandle]:
        """Several sinks (name: ``delay``/``hang`` options), started side by side."""
        procs = {}
        for name, options in wanted.items():
            args = [PYTHON, "-m", "bench.sink", "--delay", str(float(options.get("delay", 0.0)))]
            procs[name] = self.procs.start(f"sink-{name}", args + (["--hang"] if options.get("hang") else []),
                                           capture=True)
        return {name: SinkHandle(name, f"http://127.0.0.1:{read_port(proc)}/hook", proc)
                for name, proc in procs.items()}

    # -- config ----------------------------------------------------------------------
    def write_config(
        self, name: str, sinks: list[dict[str, Any]], delivery: dict[str, Any] | None = None,
        gateway: dict[str, Any] | None = None,
    ) -> Path:
        """A gateway.toml for one scenario: the bench secret, the bench Redis (unless
        ``gateway`` says otherwise), ``sinks``."""
        doc: dict[str, Any] = {
            "gateway": {
                "redis_url": self.redis_url,
                "secret": SECRET,
                "data_dir": str(self.run_dir / "data"),
                **(gateway or {}),
            },
            "delivery": {"allow_private_networks": True, **(delivery or {})},
            "sinks": sinks,
        }
        path = self.run_dir / f"{name}.toml"
        path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        return path

    # -- web -------------------------------------------------------------------------
    def web_command(self, config: Path) -> list[str]:
        """``gateway web`` (gunicorn, 2 workers) on ``config``."""
        return [GATEWAY, "web", "--config", str(config)]

    def floor_command(self, config: Path) -> list[str]:
        """The receive floor (``bench/floor.py``) on ``config``, served the same way."""
        return [PYTHON, "-m", "bench.floor", "--config", str(config)]

    @staticmethod
    def hello_command() -> list[str]:
        """The hello-world baseline, served the same way."""
        return [PYTHON, "-m", "bench.hello"]

    def serve(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Server]:
        """The servers ``wanted`` (name: command), each answering. One already running under
        that name with the same command is reused; the others start side by side, so their
        start-ups overlap, and run until the run ends or :meth:`stop` stops them (an idle
        server costs nothing measurable). A name is one configuration for the whole run."""
        started: list[Server] = []
        for name, command in wanted.items():
            running = self.servers.get(name)
            if running is not None and running.proc.poll() is None:
                if running.command != tuple(command):
                    raise ValueError(f"server {name} runs {running.command}, not {tuple(command)}")
                continue
            port = free_port()
            proc = self.procs.start(name, [*command, "--port", str(port), "--web-workers", str(WEB_WORKERS)])
            server = Server(name, tuple(command), f"http://127.0.0.1:{port}", proc)
            self.servers[name] = server
            started.append(server)

        def ready() -> bool:
            return all(s.proc.poll() is not None or http_ok(s.base_url + "/") for s in started)

        wait_until(ready, f"{', '.join(s.name for s in started)} to listen", timeout=60)
        for server in started:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.proc.returncode}; "
                                   f"see {self.run_dir / (server.name + '.log')}")
        return {name: self.servers[name] for name in wanted}

    def warm_up(self, servers: Iterable[Server], body: Path, signature: str | None) -> None:
        """Load each server not yet warm for ``warm_up_s`` (imports, pools, the Lua script
        cached), all at once: nothing is measured meanwhile."""
        cold = [s for s in servers if not s.warm]
        if not cold:
            return
        with ThreadPoolExecutor(max_workers=len(cold)) as pool:
            list(pool.map(lambda s: load.post_load(s.url, body, signature, WARM_UP_CONNECTIONS, self.warm_up_s),
                          cold))
        for server in cold:
            server.warm = True

    def _serve(self, name: str, command: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
        server = self.serve({name: command})[name]
        return server.url, server.proc

    def start_web(self, config: Path, name: str = "web") -> tuple[str, subprocess.Popen[bytes]]:
        """``gateway web`` (gunicorn, 2 workers): the receive URL and the process."""
        return self._serve(name, self.web_command(config))

    def start_floor(self, config: Path) -> tuple[str, subprocess.Popen[bytes]]:
        """The receive floor (``bench/floor.py``) served the same way: its URL and process."""
        return self._serve("floor", self.floor_command(config))

    def start_hello(self) -> tuple[str, subprocess.Popen[bytes]]:
        """The hello-world baseline served the same way: its URL and process."""
        return self._serve("hello", self.hello_command())

    def stop(self, *procs: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """Stop these children (SIGTERM together, SIGKILL after ``timeout`` s)."""
        self.procs.stop(*procs, timeout=timeout)
        for name in [name for name, server in self.servers.items() if server.proc in procs]:
            del self.servers[name]

    # -- workers ---------------------------------------------------------------------
    def start_workers(
        self, config: Path, count: int, name: str = "worker", extra: tuple[str, ...] = ()
    ) -> list[subprocess.Popen[bytes]]:
        """``count`` ``gateway worker`` processes on ``config``."""
        return [
            self.procs.start(f"{name}-{i}", [GATEWAY, "worker", "--config", str(config), *extra])
            for i in range(count)
        ]

