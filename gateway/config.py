"""Configuration: a TOML file, ``${ENV}`` interpolation, marshmallow validation.

Where the file comes from: ``--config``, else ``GATEWAY_CONFIG``, else ``./gateway.toml``,
else built-in defaults. Every error names the bad field by path
(``sinks[1].url: Not a valid URL.``); nothing unknown is silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from marshmallow.exceptions import MarshmallowError

from gateway import environment
from gateway.errors import ConfigError, flat_messages
from gateway.sinks import url_field

if TYPE_CHECKING:  # pragma: no cover
    from gateway.plugins import Plugins

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SINK_NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                            error="Use letters, digits, '.', '_' or '-' (at most 64).")
DURABILITY_MODES = ("local", "replicated")
COMMON_SINK_KEYS = frozenset({
    "name", "type", "events", "enabled", "secret", "secrets", "retry_schedule", "max_in_flight",
    "timeout", "failure_threshold", "rate_limit", "ordering",
})
ADMIN_NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$",
                             error="Use letters, digits, '.', '_', '@' or '-' (at most 64).")
DEFAULT_ADMIN = "admin"
"""The identity of the single ``admin_token`` (and of the generated one) in the audit log."""
DEFAULT_ROTATION_OVERLAP = 86_400
ORDERINGS = ("none", "per_ticket")
"""Values of a sink's ``ordering`` option: ``none`` (deliveries are independent) or
``per_ticket`` (one sink's deliveries of one ticket arrive in the order they were published;
see docs/delivery-engine.md, "Ordered delivery")."""


class RetrySchedule(fields.List):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Float(validate=validate.Range(min=0, max=7 * 86400)),
                         validate=validate.Length(min=0, max=50), **kwargs)


FSYNC_MODES = ("always", "everysec")
"""Values of ``[gateway] embedded_fsync``: Redis's ``appendfsync`` for the embedded server."""


class AdminTokenSchema(Schema):
    """One entry of ``admin_tokens``: who holds the token (the audit log's ``actor``), and it."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=ADMIN_NAME)
    token = fields.String(required=True, validate=validate.Length(min=32))


class GatewaySection(Schema):
    class Meta:
        unknown = RAISE

    redis_url = fields.String(load_default=None, allow_none=True)
    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1))
    admin_token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8))
    public_url = url_field(load_default=None, allow_none=True)
    max_body_bytes = fields.Integer(load_default=1_048_576, validate=validate.Range(min=1024, max=64 * 1_048_576))
    key_prefix = fields.String(load_default="gw:", validate=validate.Length(min=1, max=32))
    queue = fields.String(load_default="gateway", validate=validate.Length(min=1, max=64))
    idempotency_ttl = fields.Integer(load_default=86_400, validate=validate.Range(min=60))
    signature_tolerance = fields.Integer(load_default=300, validate=validate.Range(min=1, max=86_400))
    retention_days = fields.Float(load_default=14, validate=validate.Range(min=0.01, max=3650))
    data_dir = fields.String(load_default=".gateway")
    # appendfsync of the embedded Redis (only used without redis_url): "always" loses nothing
    # a killed Redis acknowledged; "everysec" is about twice as fast (see EmbeddedRedis).
    embedded_fsync = fields.String(load_default="always", validate=validate.OneOf(FSYNC_MODES))
    # How many proxies in front of the web server to believe about the client: their
    # X-Forwarded-For / X-Forwarded-Proto (werkzeug's ProxyFix). 0 = none, the default.
    trusted_proxies = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10))
    # When set, GET /metrics needs `Authorization: Bearer <metrics_token>` (not the admin token:
    # a scraper should not hold admin powers).
    metrics_token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8))
    # Several admins, each with a token of their own, so the audit log says who did what.
    admin_tokens = fields.List(fields.Nested(AdminTokenSchema), load_default=list, validate=validate.Length(max=100))
    # Seconds an old signing secret (a sink's, or the receive secret) stays valid after a rotation.
    rotation_overlap = fields.Integer(load_default=DEFAULT_ROTATION_OVERLAP,
                                      validate=validate.Range(min=0, max=30 * 86_400))
    audit_retention_days = fields.Float(load_default=365, validate=validate.Range(min=1, max=3650))

    @validates_schema
    def _distinct_admins(self, data: dict[str, Any], **kwargs: Any) -> None:
        named = data.get("admin_tokens") or []
        names = [entry["name"] for entry in named]
        tokens = [entry["token"] for entry in named]
        if data.get("admin_token"):
            names.append(DEFAULT_ADMIN)
            tokens.append(data["admin_token"])
        if len(set(names)) != len(names):
            raise ValidationError(f"Each admin needs a name of its own ({DEFAULT_ADMIN!r} is admin_token's).",
                                  "admin_tokens")
        if len(set(tokens)) != len(tokens):
            raise ValidationError("Each admin needs a token of its own.", "admin_tokens")
    # When a write counts as acknowledged: "local" once the Redis master has it; "replicated"
    # once durability_replicas replicas confirmed it (WAIT), within durability_timeout seconds.
    durability = fields.String(load_default="local", validate=validate.OneOf(DURABILITY_MODES))
    durability_replicas = fields.Integer(load_default=1, validate=validate.Range(min=1, max=16))
    durability_timeout = fields.Float(load_default=1.0, validate=validate.Range(min=0.01, max=60))


class DeliverySection(Schema):
    class Meta:
        unknown = RAISE

    timeout = fields.Float(load_default=10, validate=validate.Range(min=0.1, max=300))
    retry_schedule = RetrySchedule(load_default=list(DEFAULT_RETRY_SCHEDULE))
    retry_jitter = fields.Float(load_default=0.2, validate=validate.Range(min=0, max=1))
    allow_private_networks = fields.Boolean(load_default=False)
    max_in_flight = fields.Integer(load_default=10, validate=validate.Range(min=1, max=1000))
    failure_threshold = fields.Integer(load_default=5, validate=validate.Range(min=1, max=1000))
    circuit_cooldown = fields.Float(load_default=30, validate=validate.Range(min=0.1))
    circuit_max_cooldown = fields.Float(load_default=3600, validate=validate.Range(min=0.1))
    max_retry_after = fields.Float(load_default=3600, validate=validate.Range(min=1))
    concurrency = fields.Integer(load_default=64, validate=validate.Range(min=1, max=1024))


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """The ``[delivery]`` section: defaults for every sink, and the engine's own settings."""

    timeout: float = 10
    """Seconds for one attempt, connect to last byte (a sink's ``timeout`` overrides it)."""
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = 0.2
    allow_private_networks: bool = False
    max_in_flight: int = 10
    failure_threshold: int = 5
    circuit_cooldown: float = 30
    circuit_max_cooldown: float = 3600
    max_retry_after: float = 3600
    concurrency: int = 64
    """Deliveries in flight at once in one worker process."""

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> DeliverySettings:
        """From the loaded ``[delivery]`` section (lists become tuples)."""
        values = dict(section)
        values["retry_schedule"] = tuple(values.get("retry_schedule", DEFAULT_RETRY_SCHEDULE))
        return cls(**values)


class SinkCommon(Schema):
    """Keys every ``[[sinks]]`` table may have, whatever its type."""

    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=SINK_NAME)
    type = fields.String(required=True)
    events = fields.List(fields.String(), required=True, validate=validate.Length(min=1))
    enabled = fields.Boolean(load_default=True)
    secret = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1))
    secrets = fields.List(fields.String(validate=validate.Length(min=1)), load_default=None, allow_none=True,
                          validate=validate.Length(min=1, max=5))
    retry_schedule = RetrySchedule(load_default=None, allow_none=True)
    max_in_flight = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=1000))
    timeout = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0.1, max=300))
    failure_threshold = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))
    rate_limit = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0.01))
    ordering = fields.String(load_default="none", validate=validate.OneOf(ORDERINGS))

    @validates_schema
    def _one_secret_form(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("secret") and data.get("secrets"):
            raise ValidationError("Set either secret or secrets, not both.", "secrets")


@dataclasses.dataclass(frozen=True)
class SinkConfig:
    """One configured sink: common settings resolved against the [delivery] defaults,
    plus ``options`` (the whole table as loaded, type-specific keys included)."""

    name: str
    type: str
    events: tuple[str, ...]
    enabled: bool
    secrets: tuple[str, ...]
    retry_schedule: tuple[float, ...]
    max_in_flight: int
    timeout: float
    failure_threshold: int
    rate_limit: float | None
    options: Mapping[str, Any]
    ordering: str = "none"
    """``none`` or ``per_ticket``: deliveries of one ordering key (a ticket) wait for the
    one before them to end (see :data:`ORDERINGS`)."""
    fan_out: bool = False
    """From the sink type (:attr:`gateway.sinks.SinkType.fan_out`): circuit breaker, in-flight
    cap and rate limit apply per target rather than to the sink as a whole."""
    secret_options: frozenset[str] = frozenset({"secret", "secrets"})
    """Options whose values are secret (the common ``secret``/``secrets`` and what the sink
    type declares): :mod:`gateway.redact` never shows them."""
    source: str = "config"
    """``config`` (the file: read-only at runtime) or ``api`` (the sinks API / CLI store)."""
    retiring: tuple[tuple[str, float], ...] = ()
    """Secrets replaced by a rotation that still sign until their time (Unix seconds)."""
    created_at_ms: int | None = None
    updated_at_ms: int | None = None
    revision: int = 0
    """Bumped by every change through the API (the ETag); 0 for file sinks."""

    def subscribes(self, event_name: str) -> bool:
        """True when this sink takes ``event_name``."""
        return "*" in self.events or event_name in self.events

    def signing_secrets(self, now: float | None = None) -> tuple[str, ...]:
        """The secrets that sign a request sent now: the current ones first (so
        X-Webhook-Signature uses the newest), then those a rotation left valid until later."""
        if not self.retiring:
            return self.secrets
        at = time.time() if now is None else now
        return self.secrets + tuple(value for value, until in self.retiring if until > at)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The validated configuration."""

    redis_url: str | None = None
    secret: str | None = None
    admin_token: str | None = None
    public_url: str | None = None
    max_body_bytes: int = 1_048_576
    key_prefix: str = "gw:"
    queue: str = "gateway"
    idempotency_ttl: int = 86_400
    signature_tolerance: int = 300
    retention_days: float = 14
    data_dir: str = ".gateway"
    embedded_fsync: str = "always"
    """``appendfsync`` of the embedded Redis: ``always`` or ``everysec``."""
    trusted_proxies: int = 0
    metrics_token: str | None = None
    admin_tokens: tuple[tuple[str, str], ...] = ()
    """Named admin tokens, ``(name, token)``."""
    rotation_overlap: int = DEFAULT_ROTATION_OVERLAP
    audit_retention_days: float = 365
    durability: str = "local"
    """``local`` (acknowledged once the Redis master has it) or ``replicated`` (once
    ``durability_replicas`` replicas confirmed it)."""
    durability_replicas: int = 1
    durability_timeout: float = 1.0
    """Seconds to wait for the replicas before answering ``503 replication_timeout``."""
    delivery: DeliverySettings = DeliverySettings()
    sinks: tuple[SinkConfig, ...] = ()
    source: str | None = None

    @property
    def admin_identities(self) -> tuple[tuple[str, str], ...]:
        """Every admin, ``(name, token)``: ``admin_token`` as ``admin``, then ``admin_tokens``."""
        single = ((DEFAULT_ADMIN, self.admin_token),) if self.admin_token else ()
        return single + self.admin_tokens

    def sink(self, name: str) -> SinkConfig:
        """The sink called ``name``; KeyError when there is none."""
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(name)


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else $GATEWAY_CONFIG, else ./gateway.toml if it exists, else None."""
    if explicit:
        return Path(explicit)
    env = environment.config_file()
    if env:
        return Path(env)
    default = Path("gateway.toml")
    return default if default.exists() else None


def interpolate(value: Any, path: str, errors: dict[str, list[str]], env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; a missing variable is an error."""
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.setdefault(path, []).append(f"Environment variable {name} is not set.")
            return ""
        return ENV_PATTERN.sub(replace, value)
    if isinstance(value, dict):
        return {k: interpolate(v, f"{path}.{k}" if path else k, errors, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", errors, env) for i, v in enumerate(value)]
    return value


def _merge(errors: dict[str, list[str]], found: Mapping[str, list[str]]) -> None:
    for path, messages in found.items():
        errors.setdefault(path, []).extend(messages)


def _load_section(schema: Schema, raw: Any, path: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.setdefault(path, []).append("Must be a table.")
        return schema.load({})
    try:
        return schema.load(raw)
    except ValidationError as exc:
        _merge(errors, flat_messages(exc.messages, path))
        return {}


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _load_sink(raw: Any, index: int, delivery: DeliverySettings, plugins: Plugins | None,
               errors: dict[str, list[str]]) -> SinkConfig | None:
    found: dict[str, list[str]] = {}
    sink = load_sink_table(raw, delivery, plugins, f"sinks[{index}]", found)
    _merge(errors, found)
    return sink


def load_sink_table(raw: Any, delivery: DeliverySettings, plugins: Plugins | None, path: str,
                    errors: dict[str, list[str]]) -> SinkConfig | None:
    """Validate one ``[[sinks]]`` table (the file's, or one sent to the sinks API): the common
    keys, the type's own options with its schema, the event names. Problems go into
    ``errors`` under their dotted path below ``path`` ("" = top level); None then."""
    if not isinstance(raw, dict):
        errors.setdefault(path or "(root)", []).append("Must be a table.")
        return None
    common_raw = {k: v for k, v in raw.items() if k in COMMON_SINK_KEYS}
    own_raw = {k: v for k, v in raw.items() if k not in COMMON_SINK_KEYS}
    found: dict[str, list[str]] = {}
    try:
        common = SinkCommon().load(common_raw)
    except ValidationError as exc:
        _merge(found, flat_messages(exc.messages, path))
        common = {}
    options: dict[str, Any] = {}
    sink_type_name = raw.get("type")
    if plugins is not None and isinstance(sink_type_name, str):
        sink_type = plugins.sink_types.get(sink_type_name)
        if sink_type is None:
            hint = ", ".join(sorted(plugins.sink_types)) or "none"
            broken = [f"{n} ({e})" for n, e in plugins.failed.items()]
            msg = f"Unknown sink type {sink_type_name!r} (installed: {hint})."
            if broken:
                msg += " Plugins that failed to load: " + "; ".join(broken)
            found.setdefault(_at(path, "type"), []).append(msg)
        else:
            try:
                options = sink_type.options_schema(unknown=RAISE).load(own_raw)
            except ValidationError as exc:
                _merge(found, flat_messages(exc.messages, path))
            except (MarshmallowError, TypeError, ValueError) as exc:
                # A plugin's schema that chokes on a value of an unexpected shape (the API takes
                # any JSON) is still the caller's bad input, not a crash.
                found.setdefault(_at(path, "(options)"), []).append(f"Invalid options: {type(exc).__name__}.")
        # Event names are checked even when another common key is wrong: every problem at once.
        events = common.get("events") if common else raw.get("events")
        for event in events if isinstance(events, list) else []:
            if isinstance(event, str) and event != "*" and event not in plugins.catalog:
                found.setdefault(_at(path, "events"), []).append(f"Unknown event {event!r}.")
    elif own_raw and plugins is None:
        options = dict(own_raw)
    if found:
        _merge(errors, found)
        return None
    secrets = tuple(common["secrets"] or ([common["secret"]] if common["secret"] else []))
    return SinkConfig(
        name=common["name"], type=common["type"], events=tuple(common["events"]), enabled=common["enabled"],
        secrets=secrets,
        retry_schedule=tuple(common["retry_schedule"] if common["retry_schedule"] is not None
                             else delivery.retry_schedule),
        max_in_flight=common["max_in_flight"] or delivery.max_in_flight,
        timeout=common["timeout"] or delivery.timeout,
        failure_threshold=common["failure_threshold"] or delivery.failure_threshold,
        rate_limit=common["rate_limit"] if common["rate_limit"] is not None else (
            plugins.sink_types[common["type"]].default_rate_limit if plugins is not None else None),
        options={**common, **options},
        ordering=common["ordering"],
        fan_out=plugins.sink_types[common["type"]].fan_out if plugins is not None else False,
        secret_options=frozenset({"secret", "secrets"}) | (
            plugins.sink_types[common["type"]].secret_options if plugins is not None else frozenset()),
    )


@dataclasses.dataclass(frozen=True)
class StoredSink:
    """A sink kept by the sinks API (Redis), as stored: ``table`` is exactly what a
    ``[[sinks]]`` table would hold (secrets included), plus what the file cannot say."""

    table: dict[str, Any]
    created_at_ms: int
    updated_at_ms: int
    revision: int = 1
    retiring: tuple[tuple[str, float], ...] = ()
    """Secrets replaced by a rotation, each signing until its time (Unix seconds)."""

    def to_json(self) -> str:
        """The stored form (one JSON document per sink)."""
        return json.dumps({"table": self.table, "created_at": self.created_at_ms, "updated_at": self.updated_at_ms,
                           "revision": self.revision,
                           "retiring": [{"secret": s, "until": u} for s, u in self.retiring]},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> StoredSink:
        """The inverse of :meth:`to_json`."""
        doc = json.loads(text)
        return cls(table=dict(doc["table"]), created_at_ms=int(doc["created_at"]),
                   updated_at_ms=int(doc["updated_at"]), revision=int(doc.get("revision") or 1),
                   retiring=tuple((str(r["secret"]), float(r["until"])) for r in doc.get("retiring") or ()))

    def live_retiring(self, now: float) -> tuple[tuple[str, float], ...]:
        """The retiring secrets whose overlap has not ended at ``now``."""
        return tuple((s, u) for s, u in self.retiring if u > now)

    def config(self, delivery: DeliverySettings, plugins: Plugins | None) -> SinkConfig:
        """The :class:`SinkConfig` it stands for; ConfigError when it no longer validates
        (e.g. the plugin of its type was uninstalled)."""
        errors: dict[str, list[str]] = {}
        sink = load_sink_table(self.table, delivery, plugins, "", errors)
        if sink is None:
            raise ConfigError(errors)
        return dataclasses.replace(sink, source="api", retiring=self.retiring, created_at_ms=self.created_at_ms,
                                   updated_at_ms=self.updated_at_ms, revision=self.revision)


@dataclasses.dataclass(frozen=True)
class StoredReceiveSecret:
    """The receive endpoint's secret when set through the API (Redis), with the previous
    ones a rotation keeps accepting until their time (Unix seconds)."""

    secret: str
    set_at_ms: int
    retiring: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps({"secret": self.secret, "set_at": self.set_at_ms,
                           "retiring": [{"secret": s, "until": u} for s, u in self.retiring]},
                          separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> StoredReceiveSecret:
        """The inverse of :meth:`to_json`."""
        doc = json.loads(text)
        return cls(str(doc["secret"]), int(doc["set_at"]),
                   tuple((str(r["secret"]), float(r["until"])) for r in doc.get("retiring") or ()))


def parse_config(doc: Mapping[str, Any], plugins: Plugins | None = None, source: str | None = None,
                 env: Mapping[str, str] | None = None) -> Settings:
    """Validate a parsed TOML document. ``plugins`` validates sink types, their options and
    event names; without it only the common keys are checked."""
    errors: dict[str, list[str]] = {}
    missing_env: dict[str, list[str]] = {}
    doc = interpolate(dict(doc), "", missing_env, os.environ if env is None else env)
    errors.update({path: list(msgs) for path, msgs in missing_env.items()})
    for key in doc:
        if key not in ("gateway", "delivery", "sinks"):
            errors.setdefault(key, []).append("Unknown section.")
    gateway = _load_section(GatewaySection(), doc.get("gateway"), "gateway", errors)
    delivery_section = _load_section(DeliverySection(), doc.get("delivery"), "delivery", errors)
    delivery = DeliverySettings.from_section(delivery_section or DeliverySection().load({}))
    raw_sinks = doc.get("sinks") or []
    sinks: list[SinkConfig] = []
    if not isinstance(raw_sinks, list):
        errors.setdefault("sinks", []).append("Must be an array of tables ([[sinks]]).")
        raw_sinks = []
    for index, raw in enumerate(raw_sinks):
        sink = _load_sink(raw, index, delivery, plugins, errors)
        if sink is None:
            continue
        if any(s.name == sink.name for s in sinks):
            errors.setdefault(f"sinks[{index}].name", []).append(f"Duplicate sink name {sink.name!r}.")
            continue
        sinks.append(sink)
    if errors:
        # A missing variable is the whole story for its field: not also "too short" for the
        # empty string it was replaced with.
        errors.update(missing_env)
        raise ConfigError(errors, source)
    gateway["admin_tokens"] = tuple((entry["name"], entry["token"]) for entry in gateway.get("admin_tokens") or ())
    return Settings(**gateway, delivery=delivery, sinks=tuple(sinks), source=source)


def load_config(path: str | os.PathLike[str] | None = None, plugins: Plugins | None = None) -> Settings:
    """Find, read and validate the configuration (see the module docstring for where from)."""
    found = find_config_file(path)
    if found is None:
        return parse_config({}, plugins)
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError({"(file)": [f"Cannot read {found}: {exc.strerror}."]}, str(found)) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError({"(file)": [f"Not valid TOML: {exc}."]}, str(found)) from None
    return parse_config(doc, plugins, source=str(found.resolve()))
