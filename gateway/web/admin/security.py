"""The admin console's web security: session key, session cookie, CSRF, response headers.

The session cookie is Flask's signed cookie (itsdangerous); CSRF tokens are Flask-WTF's,
checked only on the admin blueprint, so the bearer-token JSON API needs none. The signing
key is derived from ``admin_token`` with HMAC: every gunicorn worker (and every machine)
derives the same key, and changing the token signs every admin out.

A signed cookie alone cannot be revoked, so each session also carries the session version
it was signed in under, kept in Redis (``<prefix>console:sessions:<token fingerprint>``):
sign-out increments it, which ends every console session, a copied cookie included; a
new admin token starts a version of its own (and a signing key of its own). A session
lasts ``session_lifetime`` seconds without use (one hour by default; each page extends it)
and :data:`MAX_SESSION_AGE` after sign-in at most.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import timedelta
from typing import Any

import redis
from flask import Flask, Response, current_app, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

log = logging.getLogger("gateway.web.admin")

SESSION_COOKIE_NAME = "gateway_admin"
MAX_SESSION_AGE = 12 * 3600
"""Seconds after sign-in when a session ends however much it is used."""
_KEY_LABEL = b"gateway admin console session key v1"
# No inline script or style: the console's own files only, never framed by another site.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

csrf = CSRFProtect()


def session_key(admin_token: str) -> bytes:
    """The Flask SECRET_KEY for ``admin_token``: the same in every process that shares the config."""
    return hmac.new(admin_token.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def behind_https() -> bool:
    """True when the browser reached us over https, directly or through a proxy that says so.

    Trusting X-Forwarded-Proto here is safe: it can only make the cookie stricter."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",", 1)[0].strip().lower()
    return request.is_secure or forwarded == "https"


class AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with ``Secure`` set whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or behind_https()

    def open_session(self, app: Flask, request: Any) -> SecureCookieSession | None:
        # Only the console uses sessions. Without a session cookie the result is an empty
        # session anyway, and skipping the cookie signer Flask builds per request saves ~4%
        # of the receive endpoint's CPU (measured with py-spy under gunicorn).
        if app.secret_key is not None and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)


def configure_app(app: Flask, admin_token: str | None, public_url: str | None, lifetime: int = 3600) -> None:
    """Give ``app`` what the console needs (called once per app when the blueprint registers);
    ``lifetime``: seconds a session lasts without use."""
    if admin_token and app.secret_key is None:
        app.secret_key = session_key(admin_token)
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=lifetime),
        # Checked only where the console asks (csrf.protect() in its before_request).
        WTF_CSRF_CHECK_DEFAULT=False,
        # A form stays valid as long as the session does, not one hour.
        WTF_CSRF_TIME_LIMIT=None,
    )
    if (public_url or "").lower().startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    if type(app.session_interface) is SecureCookieSessionInterface:
        app.session_interface = AdminSessionInterface()
    csrf.init_app(app)


def add_security_headers(response: Response) -> Response:
    """Headers on every console response: no framing, no caching of admin pages, strict CSP."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "admin.static":
        response.headers["Cache-Control"] = "no-store"
    return response


# -- sessions that can be ended -----------------------------------------------------------------

def _version_key() -> str:
    runtime = current_app.extensions["gateway"]
    # Named by the signing key's fingerprint: another admin token, another count.
    key = current_app.secret_key or b""
    fingerprint = hmac.new(key.encode() if isinstance(key, str) else key, b"session version",
                           hashlib.sha256).hexdigest()[:16]
    return str(runtime.keys.console_sessions(fingerprint))


def _current_version() -> str | None:
    """The session version now ("0" before the first sign-out); None when Redis is down."""
    try:
        stored = current_app.extensions["gateway"].redis.get(_version_key())
    except redis.RedisError as error:
        log.warning("console sessions: cannot read the session version (%s)", type(error).__name__)
        return None
    return stored.decode() if isinstance(stored, bytes) else str(stored or "0")


def start_session(name: str) -> None:
    """Sign ``name`` in: a fresh session (and CSRF token) under the current session version."""
    session.clear()
    session["admin"] = True
    session["admin_name"] = name  # the audit log's actor for what this session does
    session["since"] = int(time.time())
    session["version"] = _current_version() or "0"
    session.permanent = True


def session_is_live() -> bool:
    """True when the request's session is signed in, younger than :data:`MAX_SESSION_AGE` and
    not ended by a sign-out since. Redis down: judged without the version (logged), as the
    sign-in form works without Redis too."""
    if not session.get("admin"):
        return False
    if time.time() - float(session.get("since") or 0) > MAX_SESSION_AGE:
        return False
    current = _current_version()
    return current is None or session.get("version") == current


def end_all_sessions() -> None:
    """Sign-out: every session signed in so far ends, in every process (one INCR)."""
    session.clear()
    try:
        current_app.extensions["gateway"].redis.incr(_version_key())
    except redis.RedisError as error:
        log.warning("console sessions: cannot end the other sessions (%s); this one is ended",
                    type(error).__name__)
