"""The receive endpoint's secret over HTTP (bearer admin token):

* ``GET /api/receive-secret``: where it comes from (``config``: ``gateway.secret``;
  ``api``; or none: unsigned requests accepted) and since when; never its value.
* ``POST /api/receive-secret/rotate``: a new generated secret, shown once; the previous one
  stays accepted for ``gateway.rotation_overlap`` (or ``{"overlap": seconds}``).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from gateway.integrations import receive_secret
from gateway.integrations.store import iso_at
from gateway.web.api.sinks import overlap_body
from gateway.web.auth import current_actor, require_admin

bp = Blueprint("receive_secret", __name__)


@bp.get("/api/receive-secret")
@require_admin
def show_receive_secret() -> Response:
    """Where the receive secret comes from, never its value.
    ---
    get:
      tags: [tickets]
      summary: The receive secret's status
      security: [{adminToken: []}]
      responses:
        200:
          description: Its source and times.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/ReceiveSecretStatus'}
        401: Unauthorized
        403: Forbidden
        503: StorageUnavailable
    """
    return jsonify(receive_secret.status(current_app.extensions["gateway"]))


@bp.post("/api/receive-secret/rotate")
@require_admin
def rotate_receive_secret() -> Response:
    """Set a new receive secret; the previous one stays accepted for the overlap.
    ---
    post:
      tags: [tickets]
      summary: Rotate the receive secret
      description: >-
        `POST /api/webhooks/receive` then requires a signature made with the new secret (or,
        for `overlap` seconds, default `gateway.rotation_overlap`, with the previous one).
        The new secret is returned this once. Refused (409) when `gateway.secret` is set in
        the config file.
      security: [{adminToken: []}]
      requestBody:
        required: false
        content:
          application/json:
            schema:
              type: object
              properties:
                overlap: {type: integer, minimum: 0, maximum: 2592000, nullable: true}
      responses:
        200:
          description: The new secret, shown once.
          content:
            application/json:
              schema:
                type: object
                required: [secret]
                properties:
                  secret: {type: string}
                  previous_secret_valid_until: {type: string, nullable: true}
        400: BadRequest
        401: Unauthorized
        403: Forbidden
        409: Conflict
        413: PayloadTooLarge
        415: UnsupportedMediaType
        422: ValidationFailed
        503: StorageUnavailable
    """
    secret, until = receive_secret.rotate(current_app.extensions["gateway"], current_actor(), overlap_body())
    return jsonify({"secret": secret, "previous_secret_valid_until": iso_at(until)})
