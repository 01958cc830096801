"""Checks a sink must pass before it is stored: the same as a ``[[sinks]]`` table of the
config file (:func:`gateway.config.load_sink_table`: same schemas, same messages, one list
per dotted path), plus the SSRF policy for its destination
(:func:`gateway.delivery.ssrf.destination_refusal`, the check plugins get as
``SinkContext.check_destination``), so that a URL deliveries would be refused for is a 422
on ``url`` now rather than a failed delivery later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from marshmallow import fields

from gateway.config import DeliverySettings, SinkConfig, load_sink_table
from gateway.delivery.ssrf import destination_refusal
from gateway.errors import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from gateway.plugins import Plugins
    from gateway.runtime import Runtime

INVALID = "The sink has invalid fields."


def invalid(errors: dict[str, list[str]]) -> ApiError:
    """422 ``validation_failed`` with one message list per dotted path."""
    return ApiError(422, "validation_failed", INVALID, errors)


def url_options(runtime: Runtime, sink_type: str) -> list[str]:
    """The option names a sink type declares as URLs (``fields.URL`` in its schema)."""
    return _url_options(runtime.plugins, sink_type)


def _url_options(plugins: Plugins, sink_type: str) -> list[str]:
    found = plugins.sink_types.get(sink_type)
    if found is None:
        return []
    return [name for name, field in found.options_schema().fields.items() if isinstance(field, fields.URL)]


def refused_destinations(delivery: DeliverySettings, plugins: Plugins, sink_type: str,
                         options: Mapping[str, Any]) -> dict[str, str]:
    """``{option: message}`` for each URL option whose destination the SSRF guard would
    refuse (none when ``delivery.allow_private_networks`` is on): the one place that says so,
    for the sinks API's 422, its warnings on config-file sinks, and ``gateway config check``."""
    if delivery.allow_private_networks:
        return {}
    found = {}
    for name in _url_options(plugins, sink_type):
        value = options.get(name)
        if isinstance(value, str):
            refusal = destination_refusal(value)
            if refusal:
                found[name] = f"Deliveries there would be refused: {refusal}."
    return found


def destination_warnings(runtime: Runtime, config: SinkConfig) -> list[str]:
    """A sink's refused destinations as ``"option: message"`` lines (for sinks that are not
    validated on save: those of the config file)."""
    refused = refused_destinations(runtime.settings.delivery, runtime.plugins, config.type, config.options)
    return [f"{name}: {message}" for name, message in refused.items()]


def validate_table(runtime: Runtime, table: dict[str, Any], check_urls: bool = True) -> SinkConfig:
    """``table`` checked like a ``[[sinks]]`` table of the file, then its URL options
    against the SSRF policy (when ``check_urls``); 422 with every problem by path."""
    settings = runtime.settings
    errors: dict[str, list[str]] = {}
    config = load_sink_table(table, settings.delivery, runtime.plugins, "", errors)
    if config is None:
        raise invalid(errors)
    if check_urls:
        # The SSRF guard's own policy, as plugins get it (SinkContext.check_destination): one
        # place decides which destinations are refused, at save time and at every attempt.
        for name, message in refused_destinations(settings.delivery, runtime.plugins, config.type, table).items():
            errors.setdefault(name, []).append(message)
        if errors:
            raise invalid(errors)
    return config
