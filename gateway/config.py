"""Configuration: a TOML file, ``${ENV}`` interpolation, marshmallow validation.

Where the file comes from: ``--config``, else ``GATEWAY_CONFIG``, else ``./gateway.toml``,
else built-in defaults. Every error names the bad field by path
(``sinks[1].url: Not a valid URL.``); nothing unknown is silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

if TYPE_CHECKING:  # pragma: no cover
    from gateway.plugins import Plugins

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SINK_NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                            error="Use letters, digits, '.', '_' or '-' (at most 64).")
COMMON_SINK_KEYS = frozenset({
    "name", "type", "events", "enabled", "secret", "secrets", "retry_schedule", "max_in_flight",
    "timeout", "failure_threshold", "rate_limit",
})


class ConfigError(Exception):
    """Invalid configuration. ``errors`` maps a field path to its messages."""

    def __init__(self, errors: Mapping[str, list[str]], source: str | None = None) -> None:
        self.errors = dict(errors)
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        """One ``path: message`` line per problem."""
        return "\n".join(f"{path}: {msg}" for path, msgs in sorted(self.errors.items()) for msg in msgs)


def url_field(**kwargs: Any) -> fields.URL:
    """An http(s) URL; hosts without a TLD (localhost, intranet names) are allowed."""
    return fields.URL(schemes={"http", "https"}, require_tld=False, **kwargs)


class RetrySchedule(fields.List):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Float(validate=validate.Range(min=0, max=7 * 86400)),
                         validate=validate.Length(min=0, max=50), **kwargs)


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
    # How many proxies in front of the web server to believe about the client: their
    # X-Forwarded-For / X-Forwarded-Proto (werkzeug's ProxyFix). 0 = none, the default.
    trusted_proxies = fields.Integer(load_default=0, validate=validate.Range(min=0, max=10))
    # When set, GET /metrics needs `Authorization: Bearer <metrics_token>` (not the admin token:
    # a scraper should not hold admin powers).
    metrics_token = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8))


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

    def subscribes(self, event_name: str) -> bool:
        """True when this sink takes ``event_name``."""
        return "*" in self.events or event_name in self.events

    def to_public_json(self) -> dict[str, Any]:
        """For API output: never includes secret values."""
        hidden = {"secret", "secrets", "api_keys"}
        options = {k: v for k, v in self.options.items() if k not in hidden and k not in COMMON_SINK_KEYS}
        if "url" in options:
            options["url"] = redact_url(options["url"])
        if isinstance(options.get("headers"), Mapping):
            # Static headers (generic_webhook) often carry credentials: show names only.
            options["headers"] = {name: "[hidden]" for name in options["headers"]}
        return {"name": self.name, "type": self.type, "events": list(self.events), "enabled": self.enabled,
                "signed": bool(self.secrets), "max_in_flight": self.max_in_flight, "timeout": self.timeout,
                "retry_schedule": list(self.retry_schedule), "rate_limit": self.rate_limit, "options": options}


def redact_url(url: str) -> str:
    """Hide credentials and path tokens (Slack webhook URLs are secrets) in a URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path
    if "hooks.slack.com" in host or len(path) > 24:
        path = path[:12] + "…"
    return f"{parts.scheme}://{host}{path}"


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
    trusted_proxies: int = 0
    metrics_token: str | None = None
    delivery: Mapping[str, Any] = dataclasses.field(default_factory=lambda: DeliverySection().load({}))
    sinks: tuple[SinkConfig, ...] = ()
    source: str | None = None

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
    env = os.environ.get("GATEWAY_CONFIG")
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


def _flatten(messages: Any, prefix: str, out: dict[str, list[str]]) -> None:
    """marshmallow's nested error dict -> {"a.b[2].c": [msg, ...]}."""
    if isinstance(messages, dict):
        for key, sub in messages.items():
            if key == "_schema":
                _flatten(sub, prefix, out)
            elif isinstance(key, int):
                _flatten(sub, f"{prefix}[{key}]", out)
            else:
                _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, (dict, list)):
                _flatten(item, prefix, out)
            else:
                out.setdefault(prefix or "(root)", []).append(str(item))
    else:
        out.setdefault(prefix or "(root)", []).append(str(messages))


def _load_section(schema: Schema, raw: Any, path: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.setdefault(path, []).append("Must be a table.")
        return schema.load({})
    try:
        return schema.load(raw)
    except ValidationError as exc:
        _flatten(exc.messages, path, errors)
        return {}


def _load_sink(raw: Any, index: int, delivery: Mapping[str, Any], plugins: Plugins | None,
               errors: dict[str, list[str]]) -> SinkConfig | None:
    path = f"sinks[{index}]"
    if not isinstance(raw, dict):
        errors.setdefault(path, []).append("Must be a table.")
        return None
    common_raw = {k: v for k, v in raw.items() if k in COMMON_SINK_KEYS}
    own_raw = {k: v for k, v in raw.items() if k not in COMMON_SINK_KEYS}
    found: dict[str, list[str]] = {}
    try:
        common = SinkCommon().load(common_raw)
    except ValidationError as exc:
        _flatten(exc.messages, path, found)
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
            found.setdefault(f"{path}.type", []).append(msg)
        else:
            try:
                options = sink_type.options_schema(unknown=RAISE).load(own_raw)
            except ValidationError as exc:
                _flatten(exc.messages, path, found)
        for event in common.get("events") or []:
            if event != "*" and event not in plugins.catalog:
                found.setdefault(f"{path}.events", []).append(f"Unknown event {event!r}.")
    elif own_raw and plugins is None:
        options = dict(own_raw)
    if found:
        for key, msgs in found.items():
            errors.setdefault(key, []).extend(msgs)
        return None
    secrets = tuple(common["secrets"] or ([common["secret"]] if common["secret"] else []))
    return SinkConfig(
        name=common["name"], type=common["type"], events=tuple(common["events"]), enabled=common["enabled"],
        secrets=secrets,
        retry_schedule=tuple(common["retry_schedule"] if common["retry_schedule"] is not None
                             else delivery["retry_schedule"]),
        max_in_flight=common["max_in_flight"] or delivery["max_in_flight"],
        timeout=common["timeout"] or delivery["timeout"],
        failure_threshold=common["failure_threshold"] or delivery["failure_threshold"],
        rate_limit=common["rate_limit"] if common["rate_limit"] is not None else (
            plugins.sink_types[common["type"]].default_rate_limit if plugins is not None else None),
        options={**common, **options},
    )


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
    delivery = _load_section(DeliverySection(), doc.get("delivery"), "delivery", errors)
    raw_sinks = doc.get("sinks") or []
    sinks: list[SinkConfig] = []
    if not isinstance(raw_sinks, list):
        errors.setdefault("sinks", []).append("Must be an array of tables ([[sinks]]).")
        raw_sinks = []
    for index, raw in enumerate(raw_sinks):
        sink = _load_sink(raw, index, delivery or DeliverySection().load({}), plugins, errors)
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
