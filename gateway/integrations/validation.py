"""Checks a sink must pass before it is stored: the same as a ``[[sinks]]`` table of the
config file (:func:`gateway.config.load_sink_table`: same schemas, same messages, one list
per dotted path), plus the SSRF policy for its destination
(:func:`gateway.delivery.ssrf.destination_refusal`, the check plugins get as
``SinkContext.check_destination``), so that a URL deliveries would be refused for is a 422
on ``url`` now rather than a failed delivery later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from marshmallow import fields

from gateway.config import SinkConfig, load_sink_table
from gateway.delivery.ssrf import destination_refusal
from gateway.errors import ApiError

if TYPE_CHECKING:  # pragma: no cover
    from gateway.runtime import Runtime

INVALID = "The sink has invalid fields."


def invalid(errors: dict[str, list[str]]) -> ApiError:
    """422 ``validation_failed`` with one message list per dotted path."""
    return ApiError(422, "validation_failed", INVALID, errors)


def url_options(runtime: Runtime, sink_type: str) -> list[str]:
    """The option names a sink type declares as URLs (``fields.URL`` in its schema)."""
    found = runtime.plugins.sink_types.get(sink_type)
    if found is None:
        return []
    return [name for name, field in found.options_schema().fields.items() if isinstance(field, fields.URL)]


def validate_table(runtime: Runtime, table: dict[str, Any], check_urls: bool = True) -> SinkConfig:
    """``table`` checked like a ``[[sinks]]`` table of the file, then its URL options
    against the SSRF policy (when ``check_urls``); 422 with every problem by path."""
    settings = runtime.settings
    errors: dict[str, list[str]] = {}
    config = load_sink_table(table, settings.delivery, runtime.plugins, "", errors)
    if config is None:
        raise invalid(errors)
    if check_urls and not settings.delivery.allow_private_networks:
        # The SSRF guard's own policy, as plugins get it (SinkContext.check_destination): one
        # place decides which destinations are refused, at save time and at every attempt.
        for name in url_options(runtime, config.type):
            value = table.get(name)
            if isinstance(value, str):
                refusal = destination_refusal(value)
                if refusal:
                    errors.setdefault(name, []).append(f"Deliveries there would be refused: {refusal}.")
        if errors:
            raise invalid(errors)
    return config
