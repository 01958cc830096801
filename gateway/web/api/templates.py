"""``POST /api/templates/preview`` (bearer admin token): render a payload template against an
event without sending anything; what the console's "preview" button calls.

``{"body_template", "event"}`` (optionally ``"content_type"``, ``"sink"``) -> ``{"body",
"content_type"}``, rendered exactly as a delivery would be (:mod:`gateway.templates`: same
sandbox, same bounds, same JSON check), or 422 ``template_error`` with the line and column.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from gateway.errors import ApiError
from gateway.events import Event, UnknownEvent, iso_z, utc_now
from gateway.publish import samples
from gateway.sinks import DeliveryInfo
from gateway.templates import JSON_CONTENT_TYPE, PayloadTemplate, TemplateError, is_json_media_type, render_body
from gateway.web.api.filters import unknown_event
from gateway.web.api.sinks import configured_sink
from gateway.web.auth import require_admin
from gateway.web.bodies import json_object_body

bp = Blueprint("templates", __name__)
EXAMPLE = '{"body_template": "{\\"title\\": {{ ticket.subject|tojson }}}", "event": "ticket.created"}'
PREVIEW_DELIVERY = "dlv_preview"
FIELDS = frozenset({"body_template", "event", "content_type", "sink"})


class TemplateFailed(ApiError):
    """422 ``template_error``: the template's problem, with ``line``, ``column`` and ``where``
    (``template``, or ``output`` when the rendered body is not the JSON its type says)."""

    def __init__(self, error: TemplateError) -> None:
        super().__init__(422, "template_error", error.describe(), {"body_template": [error.describe()]})
        self.error = error

    def body(self) -> dict[str, Any]:
        """The usual error body plus ``line``, ``column`` and ``where``."""
        return {**super().body(), "line": self.error.line, "column": self.error.column, "where": self.error.where}


def _invalid(fields: dict[str, list[str]]) -> ApiError:
    return ApiError(422, "validation_failed", "The request body has invalid fields.", fields)


@bp.post("/api/templates/preview")
@require_admin
def preview() -> Response:
    """Render a payload template against an event, sending nothing.
    ---
    post:
      tags: [sinks]
      summary: Preview a payload template
      description: >-
        Renders `body_template` (a Jinja2 template, as the generic webhook's `body_template`
        option) for `event` exactly as a delivery would: the same sandbox and bounds, and,
        when `content_type` (default `application/json`) is JSON, the same check that the
        result parses. `event` is an envelope `{"event", "timestamp", "data"}` or an event
        name, whose catalogue sample is used. With `sink`, that sink's `body_template` and
        `content_type` are used where the body does not give them. A template that does not
        compile or fails is a 422 `template_error` with `line` and `column` (in the template,
        or in the output when `where` is `output`). The template sees `event`, `data`,
        `ticket` and `delivery` (`id` is `dlv_preview`, `attempt` 1).
      security: [{adminToken: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [event]
              properties:
                body_template: {type: string, example: '{"title": {{ ticket.subject|tojson }}}'}
                event:
                  oneOf:
                    - {type: string, x-values: event-types}
                    - {type: object, additionalProperties: true}
                content_type: {type: string, default: application/json}
                sink: {type: string, x-values: sinks}
      responses:
        200:
          description: The rendered body.
          content:
            application/json:
              schema:
                type: object
                required: [body, content_type]
                properties:
                  body: {type: string}
                  content_type: {type: string}
                  json: {type: boolean, description: 'True when content_type is JSON (the body was checked to parse).'}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        404: NotFound
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422:
          description: >-
            `validation_failed` (a bad field), or `template_error`: the template does not
            compile or fails for this event; `line`, `column` (null when unknown) and `where`
            (`template` or `output`) say where.
          content:
            application/json:
              schema:
                type: object
                required: [error, message]
                properties:
                  error: {type: string, enum: [validation_failed, template_error]}
                  message: {type: string}
                  fields: {type: object, additionalProperties: {type: array, items: {type: string}}}
                  line: {type: integer, nullable: true}
                  column: {type: integer, nullable: true}
                  where: {type: string, enum: [template, output]}
        503: StorageUnavailable
    """
    body = json_object_body(EXAMPLE)
    problems = {key[:100]: ["Unknown field."] for key in sorted(set(body) - FIELDS)}
    for key in ("body_template", "content_type", "sink"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems[key] = ["Must be a string."]
    if problems:
        raise _invalid(problems)
    source, content_type, sink_name = body.get("body_template"), body.get("content_type"), body.get("sink")
    if sink_name is not None:
        options = configured_sink(sink_name).options
        source = source if source is not None else options.get("body_template")
        content_type = content_type if content_type is not None else options.get("content_type")
    if source is None:
        raise _invalid({"body_template": ["Missing data for required field."]})
    return jsonify(render_preview(source, preview_event(body.get("event")), content_type, sink_name))


def render_preview(source: str, event: Event, content_type: str | None = None, sink_name: str | None = None
                   ) -> dict[str, Any]:
    """``{"body", "content_type", "json"}``: ``source`` rendered for ``event`` exactly as a
    delivery would be (``content_type`` defaults to JSON, whose output must parse); what this
    endpoint and the console's "Preview" answer. Raises :class:`TemplateFailed`."""
    content_type = content_type or JSON_CONTENT_TYPE
    try:
        template = PayloadTemplate.compile(source)
        rendered = render_body(template, event, DeliveryInfo(PREVIEW_DELIVERY, 1, sink_name or "preview"),
                               content_type)
    except TemplateError as exc:
        raise TemplateFailed(exc) from None
    return {"body": rendered.decode("utf-8", "replace"), "content_type": content_type,
            "json": is_json_media_type(content_type)}


def preview_event(raw: Any) -> Event:
    """The event to render for: an envelope, or an event name (its catalogue sample); a 422
    ``validation_failed`` naming the bad part otherwise."""
    if isinstance(raw, str):
        try:
            return samples.sample_event(current_app.extensions["gateway"], raw)
        except UnknownEvent:
            raise _invalid({"event": [unknown_event(raw)]}) from None
    if not isinstance(raw, dict):
        raise _invalid({"event": ['Must be an event name or an envelope {"event", "timestamp", "data"}.']})
    name, timestamp, data = raw.get("event", ""), raw.get("timestamp"), raw.get("data", {})
    problems: dict[str, list[str]] = {}
    if not isinstance(name, str):
        problems["event.event"] = ["Must be a string."]
    if timestamp is not None and not isinstance(timestamp, str):
        problems["event.timestamp"] = ["Must be a string."]
    if not isinstance(data, dict):
        problems["event.data"] = ["Must be an object."]
    if problems:
        raise _invalid(problems)
    return Event("evt_preview", name, timestamp or iso_z(utc_now()), data)
