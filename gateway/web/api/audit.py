"""``GET /api/audit`` (bearer admin token): who changed which integration, newest first."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from gateway.digits import is_ascii_digits
from gateway.errors import ApiError
from gateway.integrations import audit
from gateway.web.auth import require_admin

bp = Blueprint("audit", __name__)
DEFAULT_LIMIT = 50


@bp.get("/api/audit")
@require_admin
def list_audit() -> Response:
    """The audit log, newest first.
    ---
    get:
      tags: [audit]
      summary: The audit log
      description: >-
        One entry per create, update, enable, disable, delete, rotate, resume and replay:
        when, who (the name of the admin token used, or `cli`), what and what changed.
        Secret values never appear (`[hidden]`). Page with `cursor` (the `next_cursor` of
        the previous page).
      security: [{adminToken: []}]
      parameters:
        - {name: limit, in: query, required: false, schema: {type: integer, minimum: 1, maximum: 500, default: 50}}
        - {name: cursor, in: query, required: false, schema: {type: string}}
      responses:
        200:
          description: Entries, newest first.
          content:
            application/json:
              schema:
                type: object
                required: [entries, next_cursor]
                properties:
                  entries: {type: array, items: {$ref: '#/components/schemas/AuditEntry'}}
                  next_cursor: {type: string, nullable: true}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        503: StorageUnavailable
    """
    limit_text = request.args.get("limit", str(DEFAULT_LIMIT))
    if not is_ascii_digits(limit_text) or not 1 <= int(limit_text) <= audit.MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f"limit must be a whole number from 1 to {audit.MAX_LIMIT}.",
                       {"limit": ["Out of range."]})
    try:
        entries, cursor = audit.read(current_app.extensions["gateway"], int(limit_text), request.args.get("cursor"))
    except ValueError:
        raise ApiError(400, "invalid_cursor", "cursor must be a next_cursor this endpoint returned.",
                       {"cursor": ["Not a valid cursor."]}) from None
    return jsonify({"entries": entries, "next_cursor": cursor})
