"""Sign-in with the admin token, and sign-out."""

from __future__ import annotations

import logging
import math
from urllib.parse import urlsplit

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from gateway.web import auth_throttle
from gateway.web.admin import security
from gateway.web.admin.blueprint import bp, runtime
from gateway.web.auth import admin_identity

log = logging.getLogger("gateway.web.admin")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path inside the console (no open redirect)."""
    default = url_for("admin.integrations")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin/") or "\\" in target:
        return default
    return target


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> WerkzeugResponse | tuple[str, int] | tuple[str, int, dict[str, str]] | str:
    """The sign-in form; a right token starts a session, a wrong one is refused."""
    identities = runtime().settings.admin_identities
    configured = bool(identities)
    next_url = safe_next(request.values.get("next"))
    if not configured:
        return render_template("admin/signin.html", next_url=next_url, disabled=True), 503
    if request.method == "GET":
        if security.session_is_live():
            return redirect(next_url)
        return render_template("admin/signin.html", next_url=next_url)
    throttle = auth_throttle.for_request()
    standing = throttle.standing()
    if standing.locked:  # the token is not even compared: otherwise the guessing would go on
        log.warning("admin sign-in locked out for %s", request.remote_addr)
        minutes = math.ceil(standing.seconds_left / 60)
        error = (f"Too many failed sign-ins from your address. Try again in {minutes} "
                 f"minute{'s' if minutes != 1 else ''}.")
        page = render_template("admin/signin.html", next_url=next_url, error=error)
        return page, 429, {"Retry-After": str(standing.seconds_left)}
    given = request.form.get("token", "")
    name = admin_identity(given, identities) if given else None
    if name is None:
        if given:  # an empty form is not a guess (as a missing bearer token is not)
            throttle.failed()
        log.warning("admin sign-in refused from %s", request.remote_addr)
        return render_template("admin/signin.html", next_url=next_url,
                               error="That admin token is not valid."), 401
    throttle.succeeded(standing)
    security.start_session(name)
    return redirect(next_url)


@bp.route("/signout", methods=["POST"])
def signout() -> WerkzeugResponse:
    """End every console session, this one and any copy of a cookie (a POST with a CSRF
    token, so another site cannot sign you out)."""
    security.end_all_sessions()
    return redirect(url_for("admin.signin", signed_out=1))  # pragma: no mutate (any value reads as signed out)
