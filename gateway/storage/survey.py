"""What an operator's Redis looks like from here: the sentinels, the master, its replicas, its
persistence settings, and whether the configured durability can be met. ``gateway config
check`` prints it (see docs/deployment.md).

Every probe has short timeouts and no retries, and none writes anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.storage.connection import connect, is_sentinel_url, parse_sentinel_url
from gateway.storage.replication import Durability

PROBE_TIMEOUT_S = 2.0


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of the survey: ``level`` is ``ok``, ``note``, ``warning`` or ``error``."""

    level: str
    text: str


@dataclasses.dataclass
class Survey:
    """The findings, under the heading they belong to (``redis`` or ``durability``)."""

    findings: dict[str, list[Finding]] = dataclasses.field(default_factory=dict)
    replicas_online: int | None = None

    def add(self, section: str, level: str, text: str) -> None:
        self.findings.setdefault(section, []).append(Finding(level, text))

    @property
    def failed(self) -> bool:
        """True when something will not work (an ``error``)."""
        return any(f.level == "error" for found in self.findings.values() for f in found)


def survey_redis(url: str, durability: Durability) -> Survey:
    """Probe the Redis ``url`` names (through its sentinels, for a Sentinel URL)."""
    found = Survey()
    probe = {"socket_connect_timeout": PROBE_TIMEOUT_S, "socket_timeout": PROBE_TIMEOUT_S,
             "retry": Retry(NoBackoff(), 0)}
    if is_sentinel_url(url):
        _survey_sentinels(url, found)
    try:
        master = connect(url, **probe)
        info = master.info("replication")
    except redis.RedisError as exc:
        found.add("redis", "error", f"the master does not answer: {type(exc).__name__}: {str(exc)[:160]}")
        _survey_durability(found, durability)
        return found
    role = info.get("role")
    if role != "master":
        found.add("redis", "error", f"the server answers as a {role}, not a master: writes will fail")
    else:
        found.add("redis", "ok", "the master answers")
    _survey_replicas(info, found)
    _survey_settings(master, found)
    _survey_durability(found, durability)
    return found


def _survey_sentinels(url: str, found: Survey) -> None:
    parsed = parse_sentinel_url(url)
    kwargs = parsed.sentinel_kwargs()
    addresses = set()
    answering = 0
    for host, port in parsed.sentinels:
        where = f"sentinel {host}:{port}"
        try:
            with redis.Redis(host, port, **kwargs) as sentinel:
                state = sentinel.sentinel_master(parsed.master_name)
        except redis.ResponseError as exc:
            found.add("redis", "error", f"{where} does not know master {parsed.master_name!r} ({str(exc)[:80]})")
            continue
        except redis.RedisError as exc:
            found.add("redis", "error", f"{where} does not answer ({type(exc).__name__})")
            continue
        answering += 1
        address = f"{state.get('ip')}:{state.get('port')}"
        addresses.add(address)
        flags = state.get("flags", "")
        level = "ok" if state.get("is_master") and not (state.get("is_sdown") or state.get("is_odown")) else "error"
        found.add("redis", level, f"{where}: master {parsed.master_name!r} at {address} ({flags}), quorum "
                  f"{state.get('quorum')}, {state.get('num-other-sentinels')} other sentinels, "
                  f"{state.get('num-slaves')} replicas known")
    total = len(parsed.sentinels)
    if answering and len(addresses) > 1:
        found.add("redis", "error", f"the sentinels disagree on where the master is: {', '.join(sorted(addresses))}")
    if answering < total:
        level = "error" if answering <= total // 2 else "warning"
        found.add("redis", level, f"{answering} of {total} sentinels answer: a failover needs a majority of them")
    elif total < 3:
        found.add("redis", "warning", f"{total} sentinel(s) listed: run three (on three machines) so that one can "
                  "be lost and a failover still has a majority")


def _survey_replicas(info: dict[str, Any], found: Survey) -> None:
    replicas = [info[key] for key in sorted(info) if key.startswith("slave") and isinstance(info[key], dict)]
    online = [r for r in replicas if r.get("state") == "online"]
    found.replicas_online = len(online)
    if not replicas:
        found.add("redis", "warning", "no replica is connected: losing this machine loses the data since the last "
                  "backup, and Sentinel has nothing to promote")
        return
    shown = ", ".join(f"{r.get('ip')}:{r.get('port')} ({r.get('state')}, lag {r.get('lag')} s)" for r in replicas)
    found.add("redis", "ok" if online else "warning", f"{len(replicas)} replica(s) connected: {shown}")


def _survey_settings(master: redis.Redis, found: Survey) -> None:
    try:
        config = {**master.config_get("appendonly"), **master.config_get("min-replicas-to-write"),
                  **master.config_get("maxmemory-policy")}
    except redis.RedisError:
        found.add("redis", "note", "CONFIG GET is not allowed here: appendonly, min-replicas-to-write and "
                  "maxmemory-policy not checked")
        return
    config = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in config.items()}
    if config.get("appendonly") == "yes":
        found.add("redis", "ok", "appendonly yes")
    else:
        found.add("redis", "warning", "appendonly no: a restart of the master loses what is not on a replica")
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        found.add("redis", "warning", f"maxmemory-policy {config['maxmemory-policy']}: Redis may evict deliveries; "
                  "use noeviction")
    refuse = config.get("min-replicas-to-write", "0")
    if refuse == "0":
        found.add("redis", "note", "min-replicas-to-write 0: a master cut off from its replicas keeps accepting "
                  "writes that a failover then drops (1 is recommended)")
    else:
        found.add("redis", "ok", f"min-replicas-to-write {refuse}")


def _survey_durability(found: Survey, durability: Durability) -> None:
    if not durability.replicated:
        found.add("durability", "note", "acknowledged once the master has the write; a failover can lose the last "
                  "writes acknowledged (see docs/reliability.md); durability = \"replicated\" prevents that")
        return
    wanted = durability.replicas
    online = found.replicas_online
    if online is None:
        found.add("durability", "error", "the replicas could not be counted: the master does not answer")
    elif online < wanted:
        found.add("durability", "error", f"{online} replica(s) online, {wanted} needed: every write would answer "
                  "503 replication_timeout")
    elif online == wanted:
        found.add("durability", "warning", f"{online} replica(s) online, {wanted} needed: losing one machine stops "
                  "writes (503 replication_timeout) until a replica is back; run one more")
    else:
        found.add("durability", "ok", f"{online} replicas online, {wanted} needed")
