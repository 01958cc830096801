"""Health checks for load balancers and orchestrators (no token):

* ``GET /healthz``: the process is up and serving (always 200).
* ``GET /readyz``: 200 when Redis answers PING, else 503 ``storage_unavailable``, so a
  load balancer stops sending tickets this process could not store.
"""

from __future__ import annotations

import redis
from flask import Blueprint, Response, current_app, jsonify

from gateway.errors import redis_unavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers.
    ---
    get:
      tags: [operations]
      summary: Liveness
      security: []
      responses:
        200:
          description: The process is up.
          content:
            application/json:
              schema: {type: object, required: [status], properties: {status: {type: string, enum: [ok]}}}
    """
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Readiness: Redis answers.
    ---
    get:
      tags: [operations]
      summary: Readiness
      description: For load balancers; 503 while Redis does not answer.
      security: []
      responses:
        200:
          description: Ready to take requests.
          content:
            application/json:
              schema: {type: object, required: [status], properties: {status: {type: string, enum: [ready]}}}
        503: StorageUnavailable
    """
    try:
        current_app.extensions["gateway"].redis.ping()
    except redis.RedisError:
        return redis_unavailable().response()
    return jsonify({"status": "ready"})
