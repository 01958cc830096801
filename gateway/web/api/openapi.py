"""``GET /api/openapi.json``: the OpenAPI 3 document of every endpoint, plugins' included.

Built once per application from the app's URL map, so an endpoint a plugin adds through
``register_blueprints`` is in it without any registration. Each view describes itself in
its docstring: a YAML block after a ``---`` line, keyed by HTTP method, as apispec reads
it. Request and response schemas are named marshmallow schemas (``schema: TicketSchema``,
resolved by marshmallow's class registry) or inline JSON Schema; errors refer to the
shared responses below (``401: Unauthorized``). A view without YAML still appears, with
its docstring's first line as summary and an undescribed response, so the document never
silently loses an endpoint.

Path parameters come from the URL rule (``<delivery_id>`` -> ``{delivery_id}``). A schema
marked ``x-values: event-types`` or ``x-values: sinks`` gets this deployment's event names
or sink names as its ``enum``; ``PublishedEvent`` has one alternative per event type. The admin
console under ``/admin`` is a browser UI (HTML forms with CSRF tokens), not part of the
JSON API, and is left out, as are static files.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

log = logging.getLogger("gateway.openapi")
bp = Blueprint("openapi", __name__)
EXTENSION_KEY = "gateway.openapi"
MOUNTED_KEY = "gateway.openapi.mounted"
"""``app.extensions[MOUNTED_KEY]``: ``{path: (documented function, methods)}`` for endpoints
served beside Flask (the receive endpoint), which the URL map does not hold."""
OPENAPI_VERSION = "3.0.3"
UNDOCUMENTED_PREFIXES = ("/admin",)
METHODS = ("get", "post", "put", "patch", "delete")
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"},
                    "uuid": {"type": "string", "format": "uuid"}}
# <name>, <converter:name> or <converter(args):name>, as werkzeug writes URL rules.
_RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\([^>]*\))?:)?(?P<name>[a-zA-Z_]\w*)>")

DESCRIPTION = """Receive signed tickets, publish events, and deliver them to sinks (generic webhooks,
Slack, Zapier and third-party plugins) with signing, retries and a delivery log.

Errors are JSON: `{"error": code, "message": text, "fields": {path: [messages]}}` with a
stable `code`; `fields` has one message list per dotted path (`data.ticket.subject`).
Admin endpoints take `Authorization: Bearer <admin_token>`."""

ERROR_RESPONSES: dict[str, tuple[str, str]] = {
    "BadRequest": ("400", "Malformed request: not JSON, an unknown event name, a bad parameter."),
    "Unauthorized": ("401", "Missing credentials, or a missing or wrong signature."),
    "Forbidden": ("403", "The credentials are not valid."),
    "NotFound": ("404", "No such resource."),
    "Conflict": ("409", "The request conflicts with the resource's current state."),
    "PreconditionFailed": ("412", "`If-Match` does not match the resource's current `ETag`: it changed since "
                                  "it was read."),
    "PayloadTooLarge": ("413", "The body is larger than `gateway.max_body_bytes`."),
    "UnsupportedMediaType": ("415", "The body must be JSON (`Content-Type: application/json`)."),
    "ValidationFailed": ("422", "The body has invalid fields; `fields` has one message list per dotted path "
                                "to each invalid field (`data.ticket.subject`, `data.sla.due_at`)."),
    "TooManyAttempts": ("429", "`too_many_attempts`: too many wrong credentials (admin tokens and API keys "
                               "together; receive signatures apart) from this client address, or its IPv6 /64: "
                               "no such request is accepted from it until `Retry-After` seconds have passed."),
    "StorageUnavailable": ("503", "`storage_unavailable`: Redis is unavailable. The message says whether "
                                  "nothing was stored (Redis could not be reached) or the write may exist (Redis "
                                  "went away after the write was sent: retry with the same Idempotency-Key). "
                                  "`replication_timeout` (with `durability = \"replicated\"`): the replicas did "
                                  "not confirm the write in time; it may exist, and a retry with the same "
                                  "Idempotency-Key returns it. Retry after `Retry-After` seconds."),
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_STRING = {"type": "string"}
_TIME = {"type": "string", "description": "ISO-8601 UTC, e.g. 2026-01-15T10:30:00.000Z"}
# Shapes the core's views return (built as dicts, not through marshmallow schemas).
COMPONENT_SCHEMAS: dict[str, dict[str, Any]] = {
    "Attempt": {
        "type": "object", "description": "One delivery attempt, as the delivery log records it.",
        "required": ["delivery_id", "attempt", "outcome", "status"],
        "properties": {
            "delivery_id": _STRING, "event_id": _nullable(_STRING), "event": _nullable(_STRING),
            "event_timestamp": _nullable(_TIME), "sink": _STRING, "target": _nullable(_STRING),
            "attempt": {"type": "integer", "minimum": 1}, "at": _TIME, "duration_ms": {"type": "number"},
            "status_code": _nullable({"type": "integer"}),
            "outcome": {"type": "string",
                        "description": "delivered, retry, exhausted, give_up, gone or error"},
            "status": {"type": "string", "enum": ["delivered", "retrying", "failed"]},
            "error": _nullable({"type": "object", "properties": {"code": _STRING, "message": _STRING}}),
            "response_excerpt": _nullable({"type": "string", "description": "The first 2 KB of the answer."}),
            "request": _nullable({"type": "object", "description": "Method, URL (secrets hidden) and headers "
                                  "(signature and credential values hidden); `body` as sent (its first 2 KB, "
                                  "secrets hidden) and `body_bytes`. `body` is null when it was the event's own "
                                  "payload and the event is past its retention."}),
            "next_attempt_at": _nullable(_TIME),
        },
    },
    "Delivery": {
        "type": "object", "description": "One event to one sink target; the id is the same on every retry "
        "and replay (X-Webhook-Delivery, webhook-id).",
        "required": ["id", "status", "attempts"],
        "properties": {
            "id": _STRING, "event_id": _nullable(_STRING), "event": _nullable(_STRING),
            "sink": _nullable(_STRING),
            "target": {"type": "object",
                       "properties": {"key": _nullable(_STRING), "url": _nullable(_STRING)}},
            "status": _nullable({"type": "string", "enum": ["pending", "retrying", "waiting", "delivered",
                                                               "failed", "cancelled"]}),
            "attempts": {"type": "integer", "minimum": 0}, "created_at": _nullable(_TIME),
            "updated_at": _nullable(_TIME), "next_attempt_at": _nullable(_TIME),
            "last_status_code": _nullable({"type": "integer"}), "last_error": _nullable(_STRING),
            "replays": {"type": "integer", "minimum": 0},
            "cancel_reason": _nullable({"type": "string", "description": "Why a cancelled delivery was "
                                        "(sink_deleted: its sink was deleted while it waited)."}),
            "ordering_key": _nullable({"type": "string", "description": "On a sink with ordering per ticket: "
                                       "the ticket this delivery is ordered by."}),
            "waiting_for": _nullable({"type": "string", "description": "While waiting: the delivery of the same "
                                      "ticket that must end first."}),
            "waited_for": _nullable({"type": "object", "description": "Once released: the delivery it waited "
                                     "for and how that ended.", "properties": {
                                         "id": _STRING, "status": _nullable(_STRING),
                                         "released_at": _nullable(_TIME)}}),
        },
    },
    "DeliveryDetail": {"allOf": [{"$ref": "#/components/schemas/Delivery"}, {
        "type": "object", "properties": {
            "attempt_log": {"type": "array", "items": {"$ref": "#/components/schemas/Attempt"}},
            "payload": _nullable({"type": "object", "description": "The event as sent: event, timestamp, "
                                  "data (null once the event is past its retention)."}),
        }}]},
    "SinkState": {
        "type": "object", "required": ["name", "type", "source", "enabled", "state", "counts"],
        "properties": {
            "name": _STRING, "type": _STRING, "events": {"type": "array", "items": _STRING},
            "source": {"type": "string", "enum": ["config", "api"], "description": "Where the sink is managed: "
                       "the config file (read-only at runtime) or the sinks API."},
            "enabled": {"type": "boolean"}, "signed": {"type": "boolean"},
            "created_at": _nullable(_TIME), "updated_at": _nullable(_TIME),
            "failure_threshold": {"type": "integer"},
            "max_in_flight": {"type": "integer"},
            "timeout": {"type": "number"}, "retry_schedule": {"type": "array", "items": {"type": "number"}},
            "rate_limit": _nullable({"type": "number"}),
            "ordering": {"type": "string", "enum": ["none", "per_ticket"]},
            "fan_out": {"type": "boolean", "description": "Circuit, in-flight cap and rate limit apply per "
                        "target (e.g. per Zapier subscription)."},
            "filter": _nullable({"type": "object", "additionalProperties": True, "description": "The content "
                                 "filter as written (docs/configuration.md, \"Content filters\"); null: every "
                                 "subscribed event goes."}),
            "options": {"type": "object", "description": "The type's own options; secrets left out, URLs "
                        "shortened, static header values hidden."},
            "state": {"type": "string", "enum": ["ok", "circuit_open", "half_open", "paused"]},
            "paused_reason": _nullable(_STRING), "paused_at": _nullable(_TIME),
            "circuit_open_until": _nullable(_TIME), "failure_streak": {"type": "integer"},
            "targets": _nullable({"type": "object", "description": "Fan-out sinks: how many targets have "
                                  "their circuit open or half-open, and deliveries held back for them.",
                                  "properties": {"circuit_open": {"type": "integer"},
                                                 "half_open": {"type": "integer"},
                                                 "parked": {"type": "integer"}}}),
            "counts": {"type": "object", "properties": {
                "queued": {"type": "integer"}, "in_flight": {"type": "integer"},
                "last_24h": {"type": "object", "additionalProperties": {"type": "integer"}}}},
            "warnings": {"type": "array", "items": _STRING, "description": "Problems with a config-file "
                         "sink that deliveries would meet, e.g. \"url: Deliveries there would be refused: "
                         "127.0.0.1 is a loopback address; ...\" while delivery.allow_private_networks is off."},
        },
    },
    "SinkCreate": {
        "type": "object", "required": ["name", "type", "events"], "additionalProperties": True,
        "description": "A `[[sinks]]` table of the config file, as JSON: the common keys below and the sink "
                       "type's own options (see docs/configuration.md).",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "type": {"type": "string"}, "events": {"type": "array", "items": _STRING, "minItems": 1},
            "enabled": {"type": "boolean"}, "secret": {"type": "string", "nullable": True},
            "secrets": {"type": "array", "items": _STRING, "nullable": True},
            "retry_schedule": {"type": "array", "items": {"type": "number"}, "nullable": True},
            "max_in_flight": {"type": "integer", "nullable": True}, "timeout": {"type": "number", "nullable": True},
            "failure_threshold": {"type": "integer", "nullable": True},
            "rate_limit": {"type": "number", "nullable": True},
            "ordering": {"type": "string", "enum": ["none", "per_ticket"], "description": "per_ticket: one "
                         "ticket's deliveries arrive in the order they were published (docs/delivery-engine.md)."},
            "filter": {"type": "object", "additionalProperties": True, "nullable": True, "description": "A content "
                       "filter: only events whose envelope matches it are delivered (Convoy/Hookdeck syntax, e.g. "
                       "{\"data.ticket.priority\": {\"$in\": [\"high\", \"urgent\"]}}); an invalid one is a 422 "
                       "naming the path inside it. Test one with POST /api/filters/test."},
        },
    },
    "SinkPatch": {
        "type": "object", "additionalProperties": True,
        "description": "Keys to replace; `null` puts an option back to its default. `name` and `type` cannot "
                       "change.",
        "properties": {
            "events": {"type": "array", "items": _STRING}, "enabled": {"type": "boolean"},
            "secret": {"type": "string", "nullable": True},
            "retry_schedule": {"type": "array", "items": {"type": "number"}, "nullable": True},
            "max_in_flight": {"type": "integer", "nullable": True},
            "ordering": {"type": "string", "enum": ["none", "per_ticket"], "nullable": True},
            "filter": {"type": "object", "additionalProperties": True, "nullable": True,
                       "description": "A new content filter; null removes it."},
        },
    },
    "AuditEntry": {
        "type": "object", "required": ["id", "at", "actor", "action", "target", "changes"],
        "properties": {
            "id": _STRING, "at": _TIME,
            "actor": {"type": "string", "description": "The admin token's name (`admin` for `admin_token`), "
                      "or `cli`."},
            "action": {"type": "string", "enum": ["create", "update", "enable", "disable", "delete", "rotate",
                                                  "resume", "replay"]},
            "target": {"type": "string", "description": "`sink:<name>`, `receive_secret` or "
                       "`delivery:<id>`."},
            "changes": {"type": "object", "description": "Per changed key, `{from, to}`; secret values as "
                        "`[hidden]`.", "additionalProperties": {"type": "object"}},
        },
    },
    "ReceiveSecretStatus": {
        "type": "object", "required": ["source", "signed", "set_at", "previous_valid_until"],
        "properties": {
            "source": {"type": "string", "enum": ["config", "api"], "nullable": True},
            "signed": {"type": "boolean", "description": "True when receive requires a signature."},
            "set_at": _nullable(_TIME), "previous_valid_until": _nullable(_TIME),
        },
    },
    "PluginInfo": {
        "type": "object", "required": ["name", "builtin"],
        "properties": {
            "name": _STRING, "version": _nullable(_STRING), "builtin": {"type": "boolean"},
            "error": _nullable({"type": "string", "description": "Why it failed to load; it was skipped."}),
            "sink_types": {"type": "array", "items": _STRING},
            "event_types": {"type": "array", "items": _STRING},
        },
    },
    "EventTypeInfo": {
        "type": "object", "required": ["name", "title", "description"],
        "properties": {"name": _STRING, "title": {"type": "string", "description": "A short name for people."},
                       "description": _STRING, "plugin": _STRING,
                       "sample": {"type": "object", "description": "A realistic `data`, as live events carry it."},
                       "system": {"type": "boolean",
                                  "description": "Published by the gateway about its own sinks: a sink gets it only "
                                                 "when its `events` name it (`*` does not include it)."}},
    },
}


def _error_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": "ErrorSchema"}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                               "schema": {"type": "integer"}}}
    return response


def openapi_path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """``/api/deliveries/<delivery_id>`` -> ``/api/deliveries/{delivery_id}`` and its path
    parameters (typed from the rule's converters)."""
    parameters: list[dict[str, Any]] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        schema = dict(_CONVERTER_TYPES.get(match.group("converter") or "", {"type": "string"}))
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _RULE_ARGUMENT.sub(replace, rule.rule), parameters


def _undescribed(view: Callable[..., Any], why: str) -> dict[str, Any]:
    doc = inspect.getdoc(view) or ""
    summary = doc.split("\n", 1)[0].strip() if doc and not doc.startswith("---") else ""
    return {"summary": summary or view.__name__.replace("_", " "), "description": f"Not described yet: {why}",
            "responses": {"default": {"description": "Not described yet."}}}


def _operations(view: Callable[..., Any], methods: set[str]) -> dict[str, Any]:
    import yaml
    from apispec.yaml_utils import load_operations_from_docstring

    why = "the view has no OpenAPI YAML in its docstring."
    try:
        documented = load_operations_from_docstring(inspect.getdoc(view) or "")
    except yaml.YAMLError as exc:
        # A plugin's broken docstring must not break the document for everyone.
        log.warning("openapi: the docstring YAML of %s cannot be read: %s", view.__qualname__, exc)
        documented, why = {}, "the view's docstring YAML cannot be read."
    operations: dict[str, Any] = {}
    for method in METHODS:
        if method.upper() in methods:
            operations[method] = copy.deepcopy(documented.get(method)) or _undescribed(view, why)
    return operations


def _documented(rule: Rule) -> bool:
    if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
        return False
    return not any(rule.rule == p or rule.rule.startswith(p + "/") for p in UNDOCUMENTED_PREFIXES)


def _published_event_schema(plugin: Any, runtime: Any) -> dict[str, Any]:
    """``{"event", "data"}`` for every catalogued event type: one alternative per type, its
    ``data`` the type's marshmallow schema (plugins' event types included)."""
    alternatives = []
    for event_type in runtime.plugins.catalog:
        alternatives.append({
            "title": event_type.name, "description": event_type.description,
            "type": "object", "required": ["event", "data"], "additionalProperties": False,
            "properties": {"event": {"type": "string", "enum": [event_type.name]},
                           "data": plugin.resolver.resolve_schema_dict(event_type.schema)},
        })
    return {"oneOf": alternatives, "description": "An event of the catalogue (GET /api/event-types)."}


def _dangling_refs(node: Any, components: dict[str, Any]) -> list[str]:
    """``$ref`` targets under ``node`` that are not in ``components``."""
    found: list[str] = []
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            kind, _, name = ref.removeprefix("#/components/").partition("/")
            if name not in components.get(kind, {}):
                found.append(ref)
        for child in node.values():
            found.extend(_dangling_refs(child, components))
    elif isinstance(node, list):
        for child in node:
            found.extend(_dangling_refs(child, components))
    return found


def _fill_values(node: Any, values: dict[str, list[str]]) -> None:
    """``x-values: event-types`` / ``x-values: sinks`` in a schema becomes an ``enum`` of this
    deployment's event names / configured sink names, so the document lists what exists."""
    if isinstance(node, dict):
        kind = node.get("x-values")
        if isinstance(kind, str) and kind in values and values[kind]:
            node["enum"] = list(values[kind])
        for child in node.values():
            _fill_values(child, values)
    elif isinstance(node, list):
        for child in node:
            _fill_values(child, values)


def _add_throttle_response(document: dict[str, Any]) -> None:
    """Every operation that takes a credential (the admin token, a Zapier key, a receive
    signature) can answer 429 (gateway.storage.throttle): added here once rather than in
    each view's docstring, plugins' views included."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            schemes = {name for requirement in operation.get("security") or [] for name in requirement}
            if schemes & {"adminToken", "zapierApiKey", "webhookSignature"}:
                operation.setdefault("responses", {}).setdefault(
                    "429", {"$ref": "#/components/responses/TooManyAttempts"})


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI document for ``app`` (every routed, documented endpoint)."""
    from apispec import APISpec
    from apispec.ext.marshmallow import MarshmallowPlugin

    from gateway import __version__

    runtime = app.extensions["gateway"]
    marshmallow_plugin = MarshmallowPlugin()
    spec = APISpec(title="Ticket event gateway", version=__version__, openapi_version=OPENAPI_VERSION,
                   plugins=[marshmallow_plugin], info={"description": DESCRIPTION})
    spec.components.security_scheme("adminToken", {
        "type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <gateway.admin_token>`"})
    spec.components.security_scheme("zapierApiKey", {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "A key from a Zapier sink's `api_keys` (or the admin token)."})
    spec.components.security_scheme("webhookSignature", {
        "type": "apiKey", "in": "header", "name": "X-Webhook-Signature",
        "description": "Hex HMAC-SHA256 of the raw body with `gateway.secret` (required when it is set); "
                       "Standard Webhooks headers are accepted instead."})
    for name, schema in COMPONENT_SCHEMAS.items():
        spec.components.schema(name, schema)
    spec.components.schema("PublishedEvent", _published_event_schema(marshmallow_plugin, runtime))
    for name, (status, description) in ERROR_RESPONSES.items():
        spec.components.response(name, _error_response(description, retry_after=status in ("429", "503")))
    spec.components.response("Error", _error_response("An error, as `{error, message, fields}`."))
    rules = sorted((r for r in app.url_map.iter_rules() if _documented(r)), key=lambda r: r.rule)
    by_path: dict[str, tuple[dict[str, Any], list[dict[str, Any]], dict[str, Callable[..., Any]]]] = {}
    for rule in rules:
        path, parameters = openapi_path(rule)
        view = app.view_functions[rule.endpoint]
        operations, _, views = by_path.setdefault(path, ({}, parameters, {}))
        for method, operation in _operations(view, set(rule.methods or ())).items():
            operations[method], views[method] = operation, view
    for path, (view, methods) in app.extensions.get(MOUNTED_KEY, {}).items():
        operations, _, views = by_path.setdefault(path, ({}, [], {}))
        for method, operation in _operations(view, set(methods)).items():
            operations[method], views[method] = operation, view
    for path, (operations, parameters, views) in by_path.items():
        for operation in operations.values():
            declared = {(p.get("name"), p.get("in")) for p in operation.get("parameters", [])
                        if isinstance(p, dict)}
            missing = [p for p in parameters if (p["name"], "path") not in declared]
            if missing:
                operation["parameters"] = missing + list(operation.get("parameters", []))
        try:
            spec.path(path=path, operations=operations)
        except Exception as exc:  # noqa: BLE001 - e.g. a plugin naming a schema that does not exist
            log.warning("openapi: %s cannot be described: %s: %s", path, type(exc).__name__, exc)
            invalid = "its description is invalid."
            fallback = {method: {**_undescribed(view, invalid), "parameters": parameters}
                        for method, view in views.items()}
            spec.path(path=path, operations=fallback)
    document = spec.to_dict()
    for path, (_, parameters, views) in by_path.items():
        missing_refs = _dangling_refs(document["paths"].get(path, {}), document.get("components", {}))
        if missing_refs:
            # apispec takes an unknown schema name for a reference; left in, it would make
            # the whole document unusable for clients.
            log.warning("openapi: %s refers to %s, which does not exist", path, ", ".join(missing_refs))
            document["paths"][path] = {
                method: {**_undescribed(view, f"its description refers to {', '.join(missing_refs)}, "
                                              "which does not exist."), "parameters": parameters}
                for method, view in views.items()}
    _add_throttle_response(document)
    _fill_values(document, {"event-types": runtime.plugins.catalog.names(),
                            "sinks": list(runtime.integrations.configs)})
    return document


@bp.get("/api/openapi.json")
def openapi_document() -> Response:
    """This API's OpenAPI 3 document.
    ---
    get:
      tags: [operations]
      summary: The OpenAPI document
      description: Every endpoint of this gateway, the ones plugins add included.
      security: []
      responses:
        200:
          description: An OpenAPI 3.0 document.
          content:
            application/json:
              schema: {type: object}
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    version = app.extensions["gateway"].refresh().version
    built = app.extensions.get(EXTENSION_KEY)
    if built is None or built[0] != version:
        # The URL map is fixed after start-up; the sink names (x-values: sinks) change with
        # the integrations' version.
        built = app.extensions[EXTENSION_KEY] = (version, build_spec(app))
    return jsonify(built[1])
