"""Configuration: TOML + ``${ENV}`` interpolation + validation, every error named by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.configs import write_config
from support.plugins import EnvelopeSinkPlugin

from gateway.config import ConfigError, find_config_file, load_config, parse_config
from gateway.delivery.sink_state import public_sink
from gateway.plugins import load_plugins


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load_plugins(extra=[EnvelopeSinkPlugin()])


def sink(name: str = "crm", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "envelope", "url": "https://crm.example.com/hooks/support",
            "events": ["ticket.created", "ticket.resolved"], **extra}


def errors_of(doc: dict[str, Any], plugins: Any, env: dict[str, str] | None = None) -> dict[str, list[str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, plugins, env=env or {})
    return caught.value.errors


def test_the_issue_example_is_valid(plugins: Any) -> None:
    doc = {
        "gateway": {"redis_url": "redis://127.0.0.1:6379/0", "secret": "${WEBHOOK_SECRET}",
                    "admin_token": "${GATEWAY_ADMIN_TOKEN}", "public_url": "https://support.example.com",
                    "max_body_bytes": 1048576},
        "delivery": {"timeout": 10, "retry_schedule": [5, 300, 1800, 7200, 18000, 36000, 36000],
                     "allow_private_networks": False},
        "sinks": [sink(secret="${CRM_WEBHOOK_SECRET}", enabled=True)],
    }
    env = {"WEBHOOK_SECRET": "in-secret", "GATEWAY_ADMIN_TOKEN": "admin-token-123", "CRM_WEBHOOK_SECRET": "crm-s"}
    settings = parse_config(doc, plugins, env=env)
    assert settings.secret == "in-secret"
    assert settings.admin_token == "admin-token-123"
    assert settings.sinks[0].secrets == ("crm-s",)
    assert settings.sinks[0].events == ("ticket.created", "ticket.resolved")
    assert settings.sinks[0].timeout == 10
    assert settings.delivery.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_defaults_without_any_file(plugins: Any) -> None:
    settings = parse_config({}, plugins, env={})
    assert settings.redis_url is None and settings.secret is None and settings.sinks == ()
    assert settings.max_body_bytes == 1048576


def test_unknown_keys_are_errors_by_path(plugins: Any) -> None:
    errors = errors_of({"gateway": {"secrett": "x"}, "delivery": {"timout": 3}, "sinks": [sink(colour="red")],
                        "extras": {}}, plugins)
    assert errors == {"gateway.secrett": ["Unknown field."], "delivery.timout": ["Unknown field."],
                      "sinks[0].colour": ["Unknown field."], "extras": ["Unknown section."]}


def test_unknown_sink_type(plugins: Any) -> None:
    errors = errors_of({"sinks": [sink(), sink("b", type="carrier_pigeon")]}, plugins)
    assert list(errors) == ["sinks[1].type"]
    assert "Unknown sink type 'carrier_pigeon'" in errors["sinks[1].type"][0]
    assert "envelope" in errors["sinks[1].type"][0]  # names what is installed


def test_unknown_sink_type_names_a_plugin_that_failed_to_load(plugins: Any) -> None:
    plugins.info["broken_sinks"] = type(plugins.info["gateway.publish.builtin_events"])(
        "broken_sinks", "1.0", builtin=False, error="ImportError: no module named requests_oauth")
    try:
        message = errors_of({"sinks": [sink(type="oauth_webhook")]}, plugins)["sinks[0].type"][0]
    finally:
        del plugins.info["broken_sinks"]
    assert "broken_sinks (ImportError: no module named requests_oauth)" in message


def test_unknown_event_names(plugins: Any) -> None:
    errors = errors_of({"sinks": [sink(events=["ticket.created", "ticket.deleted", "tickets.*"])]}, plugins)
    assert errors == {"sinks[0].events": ["Unknown event 'ticket.deleted'.", "Unknown event 'tickets.*'."]}
    assert parse_config({"sinks": [sink(events=["*"])]}, plugins, env={}).sinks[0].subscribes("feedback.received")


def test_duplicate_sink_name(plugins: Any) -> None:
    errors = errors_of({"sinks": [sink("crm"), sink("slack"), sink("crm")]}, plugins)
    assert errors == {"sinks[2].name": ["Duplicate sink name 'crm'."]}


def test_missing_environment_variable(plugins: Any) -> None:
    errors = errors_of({"gateway": {"secret": "${WEBHOOK_SECRET}"}, "sinks": [sink(secret="${CRM_SECRET}")]},
                       plugins, env={})
    assert errors == {"gateway.secret": ["Environment variable WEBHOOK_SECRET is not set."],
                      "sinks[0].secret": ["Environment variable CRM_SECRET is not set."]}
    # ${VAR:-default} supplies a default instead.
    settings = parse_config({"gateway": {"secret": "${WEBHOOK_SECRET:-fallback}"}}, plugins, env={})
    assert settings.secret == "fallback"


def test_bad_url_names_the_sink_by_index(plugins: Any) -> None:
    errors = errors_of({"sinks": [sink("a"), sink("b", url="not a url"), sink("c", url="ftp://x.example.com/")]},
                       plugins)
    assert errors == {"sinks[1].url": ["Not a valid URL."], "sinks[2].url": ["Not a valid URL."]}
    assert ConfigError(errors).describe().splitlines()[0] == "sinks[1].url: Not a valid URL."


def test_type_errors_and_ranges(plugins: Any) -> None:
    errors = errors_of({"gateway": {"max_body_bytes": "big", "admin_token": "short"},
                        "delivery": {"retry_schedule": [5, -1]}, "sinks": [sink(events=[])]}, plugins)
    assert set(errors) == {"gateway.max_body_bytes", "gateway.admin_token", "delivery.retry_schedule[1]",
                           "sinks[0].events"}


def test_web_section_is_validated_by_path(plugins: Any) -> None:
    errors = errors_of({"web": {"header_timeout": 0, "max_connections": "many", "read_timeout": 5}}, plugins)
    assert set(errors) == {"web.header_timeout", "web.max_connections", "web.read_timeout"}
    web = parse_config({"web": {"header_timeout": 2.5, "body_min_rate": 1000}}, plugins).web
    assert (web.header_timeout, web.body_timeout, web.body_min_rate, web.max_connections) == (2.5, 10, 1000, 1000)


def test_sinks_must_be_an_array_of_tables(plugins: Any) -> None:
    assert errors_of({"sinks": {"name": "x"}}, plugins) == {"sinks": ["Must be an array of tables ([[sinks]])."]}
    assert errors_of({"sinks": ["x"]}, plugins) == {"sinks[0]": ["Must be a table."]}


def test_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    assert find_config_file() is None
    write_config(tmp_path / "gateway.toml", {"gateway": {"max_body_bytes": 4096}})
    assert load_config(plugins=plugins).max_body_bytes == 4096
    other = tmp_path / "other.toml"
    write_config(other, {"gateway": {"max_body_bytes": 8192}})
    monkeypatch.setenv("GATEWAY_CONFIG", str(other))
    assert load_config(plugins=plugins).max_body_bytes == 8192
    explicit = tmp_path / "explicit.toml"
    write_config(explicit, {"gateway": {"max_body_bytes": 2048}})
    assert load_config(explicit, plugins).max_body_bytes == 2048


def test_unreadable_and_invalid_files(tmp_path: Path, plugins: Any) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.toml", plugins)
    assert "Cannot read" in missing.value.describe()
    broken = tmp_path / "broken.toml"
    broken.write_text("[gateway\nsecret = 1\n")
    with pytest.raises(ConfigError) as invalid:
        load_config(broken, plugins)
    assert invalid.value.describe().startswith("(file): Not valid TOML")


def test_public_sink_json_never_contains_secrets(plugins: Any) -> None:
    settings = parse_config({"sinks": [sink(secrets=["new-secret", "old-secret"])]}, plugins, env={})
    shown = public_sink(settings.sinks[0])
    assert "new-secret" not in repr(shown) and "old-secret" not in repr(shown)
    assert shown["signed"] is True


def test_example_config_in_the_repository_is_valid(plugins: Any) -> None:
    example = Path(__file__).resolve().parents[1] / "gateway.example.toml"
    env = {"WEBHOOK_SECRET": "s", "GATEWAY_ADMIN_TOKEN": "admin-token-123", "CRM_WEBHOOK_SECRET": "c",
           "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x", "ZAPIER_API_KEY": "zapier-key-0123456789"}
    import tomllib

    doc = tomllib.loads(example.read_text())
    # The example's sinks use the bundled plugins' types; check everything else here, and
    # the sinks against whichever of those plugins are installed.
    installed = {t for t in ("generic_webhook", "slack", "zapier") if t in load_plugins().sink_types}
    doc["sinks"] = [s for s in doc.get("sinks", []) if s["type"] in installed]
    parse_config(doc, load_plugins(), env=env)
