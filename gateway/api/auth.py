"""Bearer-token authentication for the admin API."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from gateway import auth_throttle
from gateway.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def check_admin_token(given: str | None) -> None:
    """Raise 401 without a token, 403 with a wrong one (compared in constant time), and 429
    without looking at the token once the client's address has had too many wrong ones."""
    expected = current_app.extensions["gateway"].settings.admin_token
    if not given:  # not a guess: neither counted nor locked out
        raise ApiError(401, "unauthorized", "An admin token is required: send 'Authorization: Bearer <token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    throttle = auth_throttle.for_request()
    standing = throttle.standing()
    if standing.locked:
        raise too_many_attempts(standing)
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        throttle.failed()
        raise ApiError(403, "forbidden", "The admin token is not valid.")
    throttle.succeeded(standing)


def too_many_attempts(standing: auth_throttle.Standing) -> ApiError:
    """429 for an address locked out after too many wrong admin tokens."""
    return ApiError(429, "too_many_attempts", "Too many wrong admin tokens from this address; "
                    "retry after the number of seconds in Retry-After.",
                    headers={"Retry-After": str(standing.seconds_left)})


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
