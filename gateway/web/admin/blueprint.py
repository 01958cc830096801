"""The ``/admin`` blueprint: sign-in guard, CSRF check, error pages and template helpers.

Views live in the modules named after their page (signin, integrations, deliveries,
catalogue); importing :mod:`gateway.web.admin` attaches them to :data:`bp`.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast

import redis
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.config import DEFAULT_ADMIN
from gateway.digits import is_ascii_digits
from gateway.errors import ApiError, http_error, redis_unavailable
from gateway.logs import escape_unprintable
from gateway.web.admin import security
from gateway.web.auth import ACTOR_KEY

log = logging.getLogger("gateway.web.admin")
_PACKAGE = resources.files("gateway.web.admin")
bp = Blueprint("admin", __name__, url_prefix="/admin",
               template_folder=str(_PACKAGE / "templates"),
               static_folder=str(_PACKAGE / "static"), static_url_path="/static")
PUBLIC_ENDPOINTS = frozenset({"admin.signin", "admin.static"})


def wants_json() -> bool:
    """The console's few JSON endpoints (polled by its script) end in ``.json``."""
    return request.path.endswith(".json")


def runtime() -> Any:
    """The process's :class:`gateway.runtime.Runtime`."""
    return current_app.extensions["gateway"]


def config_name() -> str:
    """The configuration file's name, as the console marks the sinks it defines."""
    source = runtime().settings.source
    return os.path.basename(str(source)) if source else "gateway.toml"


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    settings = state.app.extensions["gateway"].settings
    # Every admin token keys the session: changing any of them signs every admin out.
    tokens = "\n".join(token for _, token in settings.admin_identities) or None
    security.configure_app(cast(Flask, state.app), tokens, settings.public_url, settings.session_lifetime)


@bp.before_request
def _guard() -> WerkzeugResponse | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        if request.endpoint == "admin.signin":
            security.csrf.protect()
        return None
    if not runtime().settings.admin_identities or not security.session_is_live():
        if wants_json():
            raise ApiError(401, "unauthorized", "Sign in to the admin console first.")
        target = request.full_path if request.method == "GET" else url_for("admin.integrations")
        return redirect(url_for("admin.signin", next=target.rstrip("?")))
    security.csrf.protect()
    setattr(g, ACTOR_KEY, session.get("admin_name") or DEFAULT_ADMIN)
    return None


@bp.after_request
def _headers(response: WerkzeugResponse) -> WerkzeugResponse:
    return security.add_security_headers(response)  # type: ignore[arg-type]


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    # Usually a page left open across a sign-out or a token change: say how to recover.
    return render_template("admin/error.html", title="Form expired",
                           message="This form has expired or did not come from this console. "
                                   "Go back, reload the page and try again."), 400


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Any:
    code = error.code or 500
    if wants_json():
        return http_error(code, error.description or error.name).response()
    return render_template("admin/error.html", title=error.name, message=error.description or error.name), code


@bp.errorhandler(redis.RedisError)
def _storage_down(error: redis.RedisError) -> Any:
    log.warning("admin console: redis unavailable: %s", type(error).__name__)
    if wants_json():
        return redis_unavailable().response()
    return render_template("admin/error.html", title="Storage unavailable",
                           message="The gateway cannot reach Redis right now, so this page cannot be shown. "
                                   "Nothing was changed. Try again in a few seconds."), 503, {"Retry-After": "5"}


@bp.route("/<path:unknown>")
def not_found(unknown: str) -> Any:
    """Unknown console paths get the console's own 404 page, not the API's JSON."""
    abort(404, description="There is no such page in the admin console.")


@bp.app_template_filter("when")
def format_when(value: Any) -> str:
    """A timestamp (ms since the epoch, ISO text or datetime) as ``2026-01-15 10:30:00 UTC``."""
    moment = to_datetime(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


@bp.app_template_filter("iso")
def format_iso(value: Any) -> str:
    """A timestamp as ISO-8601 (for ``<time datetime>``)."""
    moment = to_datetime(value)
    return moment.isoformat().replace("+00:00", "Z") if moment else ""


@bp.app_template_filter("pretty_json")
def pretty_json(value: Any) -> str:
    """Indented JSON for a ``<pre>`` block, with control and bidi characters escaped (see
    :func:`visible`)."""
    return escape_unprintable(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False), multiline=True)


@bp.app_template_filter("visible")
def visible(value: Any, multiline: bool = False) -> str:
    """Text that came from outside (a ticket's fields, a destination's answer) as it may be
    shown: control characters and bidirectional overrides (U+202E turns ``exe.txt`` into
    what looks like ``txt.exe``) written as escapes, so the page shows what is stored.
    ``multiline`` keeps line feeds and tabs, for ``<pre>`` blocks."""
    return escape_unprintable(str(value), multiline=multiline)


@bp.app_template_filter("pretty_body")
def pretty_body(text: str) -> str:
    """A request body for a ``<pre>`` block: indented when it is whole JSON, else as it is
    (a form body, or JSON cut at the excerpt's bound); control and bidi characters escaped
    either way (see :func:`visible`)."""
    try:
        return pretty_json(json.loads(text))
    except ValueError:
        return escape_unprintable(text, multiline=True)


def to_datetime(value: Any) -> datetime | None:
    """Interpret the timestamp forms the gateway stores; None when there is none."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, (int, float)) or (isinstance(value, str) and is_ascii_digits(value.replace(".", "", 1))):
        number = float(value)
        # Seconds or milliseconds since the epoch: anything past 1e11 is milliseconds.
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return None
    return None
