"""``POST /api/filters/test`` (bearer admin token): does a content filter take this event?

What the console's "test against a sample event" button calls: ``{"filter": {...},
"event": {...}}`` (a filter being written) or ``{"sink": name, "event": {...}}`` (a sink's
saved filter) -> ``{"match": true|false}``. Nothing is published. An invalid filter is a
422 naming the path inside it, exactly as saving it would be (:mod:`gateway.filters`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from gateway.errors import ApiError
from gateway.events import UnknownEvent
from gateway.filters import FilterInvalid, compile_filter
from gateway.publish import samples
from gateway.web.api.sinks import configured_sink
from gateway.web.auth import require_admin
from gateway.web.bodies import json_object_body

bp = Blueprint("filters", __name__)
EXAMPLE = '{"filter": {"data.ticket.priority": {"$in": ["high", "urgent"]}}, "event": {"event": "ticket.created", ...}}'


def _invalid(fields: dict[str, list[str]], message: str = "The request body has invalid fields.") -> ApiError:
    return ApiError(422, "validation_failed", message, fields)


@bp.post("/api/filters/test")
@require_admin
def test_filter() -> Response:
    """Match a content filter (given, or a sink's) against an event.
    ---
    post:
      tags: [sinks]
      summary: Test a content filter against an event
      description: >-
        `event` is the envelope a sink's filter is matched against: `{"event", "timestamp",
        "data"}`, or an event name, whose catalogue sample (`GET /api/event-types`) is used. Give the filter
        itself in `filter`, or a sink's name in `sink` to use its saved filter (a sink without
        one takes every event). Nothing is published. An invalid filter is a 422 whose `fields`
        name the path inside it (`filter.data.ticket.priority.$inn`). The syntax is in
        docs/configuration.md, "Content filters".
      security: [{adminToken: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [event]
              properties:
                filter:
                  type: object
                  additionalProperties: true
                  example: {"data.ticket.priority": {"$in": ["high", "urgent"]}}
                sink: {type: string, x-values: sinks}
                event:
                  oneOf:
                    - {type: string, x-values: event-types}
                    - type: object
                      additionalProperties: true
                      example: {"event": "ticket.created", "timestamp": "2026-01-15T10:30:00Z",
                                "data": {"ticket": {"priority": "high"}}}
      responses:
        200:
          description: Whether the filter takes the event.
          content:
            application/json:
              schema:
                type: object
                required: [match]
                properties:
                  match: {type: boolean}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    body = json_object_body(EXAMPLE)
    event = body.get("event")
    problems: dict[str, list[str]] = {}
    if isinstance(event, str):
        event = _sample(event, problems)
    if not isinstance(event, dict):
        problems.setdefault("event", []).append(
            'Must be an event name or an envelope, a JSON object: {"event", "timestamp", "data"}.')
        event = {}
    has_filter, sink = "filter" in body, body.get("sink")
    if has_filter == (sink is not None):
        problems["(root)"] = ["Give either filter or sink."]
    elif sink is not None and not isinstance(sink, str):
        problems["sink"] = ["Must be a sink's name."]
    unknown = sorted(set(body) - {"filter", "sink", "event"})
    for key in unknown:
        problems[key[:100]] = ["Unknown field."]
    if problems:
        raise _invalid(problems)
    if isinstance(sink, str):
        return jsonify({"match": _sink_matches(sink, event)})
    return jsonify({"match": filter_matches(body["filter"], event)})


def filter_matches(spec: Any, event: Mapping[str, Any]) -> bool:
    """Whether the content filter ``spec`` (as written: JSON) takes the envelope ``event``;
    what this endpoint and the console's "Test filter" answer. An invalid filter raises a
    422 ``validation_failed`` whose fields are the paths inside it (``filter.data.x.$inn``),
    as saving it would."""
    try:
        compiled = compile_filter(spec)
    except FilterInvalid as exc:
        raise _invalid({f"filter.{path}" if path else "filter": msgs for path, msgs in exc.errors.items()},
                       "The filter is not valid.") from None
    return bool(compiled.matches(event))


def _sample(name: str, problems: dict[str, list[str]]) -> dict[str, Any] | None:
    """The envelope of the catalogue's sample of event ``name`` (what the console tests with)."""
    try:
        return samples.sample_event(current_app.extensions["gateway"], name).envelope()
    except UnknownEvent:
        problems["event"] = [unknown_event(name)]
        return {}


def unknown_event(name: str) -> str:
    """The message for an event name the catalogue does not have."""
    return f"Unknown event {name[:100]!r}; GET /api/event-types lists them."


def _sink_matches(name: str, event: dict[str, Any]) -> bool:
    config = configured_sink(name)
    return config.filter is None or bool(config.filter.matches(event))
