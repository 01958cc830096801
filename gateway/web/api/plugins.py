"""``GET /api/plugins`` (bearer admin token): every loaded plugin with its version, the sink
and event types it registered, and the error of any plugin that failed to load."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from gateway.web.auth import require_admin

bp = Blueprint("plugins_api", __name__)


@bp.get("/api/plugins")
@require_admin
def list_plugins() -> Response:
    """Loaded plugins: versions, sink and event types, load errors.
    ---
    get:
      tags: [operations]
      summary: List plugins
      security: [{adminToken: []}]
      responses:
        200:
          description: Builtins first, then by name; a plugin that failed to load carries its error.
          content:
            application/json:
              schema:
                type: object
                required: [plugins]
                properties:
                  plugins: {type: array, items: {$ref: '#/components/schemas/PluginInfo'}}
        401: Unauthorized
        403: Forbidden
    """
    plugins = current_app.extensions["gateway"].plugins
    return jsonify({"plugins": [info.to_json() for info in plugins.plugin_list()]})
