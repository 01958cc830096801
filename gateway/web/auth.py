"""Bearer-token authentication for the admin API."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flask import current_app, g, request

from gateway.errors import ApiError
from gateway.web import auth_throttle

F = TypeVar("F", bound=Callable[..., Any])


ACTOR_KEY = "gateway_admin"


def admin_identity(given: str, identities: Sequence[tuple[str, str]]) -> str | None:
    """The name of the admin whose token ``given`` is, or None. Every token is compared, in
    constant time, whatever matched: the time taken says nothing about which one did."""
    found = None
    for name, token in identities:
        if hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")) and found is None:
            found = name
    return found


def current_actor() -> str:
    """Who is making the current admin request: the name of the admin token it carried
    (``admin`` for ``admin_token``), or of the console session."""
    return str(g.get(ACTOR_KEY) or "admin")


def check_admin_token(given: str | None) -> None:
    """Raise 401 without a token, 403 with a wrong one (compared in constant time), and 429
    without looking at the token once the client's address has had too many wrong ones.
    A right token's admin becomes :func:`current_actor`."""
    identities = current_app.extensions["gateway"].settings.admin_identities
    if not given:  # not a guess: neither counted nor locked out
        raise ApiError(401, "unauthorized", "An admin token is required: send 'Authorization: Bearer <token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    name = auth_throttle.for_request().check(given, lambda token: admin_identity(token, identities),
                                             "admin tokens")
    if name is None:
        raise ApiError(403, "forbidden", "The admin token is not valid.")
    setattr(g, ACTOR_KEY, name)


def bearer_token() -> str | None:
    """The token from ``Authorization: Bearer <token>``, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def require_admin(view: F) -> F:
    """Decorator for admin endpoints."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        check_admin_token(bearer_token())
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
