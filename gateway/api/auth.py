"""Bearer-token authentication for the admin API."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from gateway.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def check_admin_token(given: str | None) -> None:
    """Raise 401 without a token, 403 with a wrong one (compared in constant time)."""
    expected = current_app.extensions["gateway"].settings.admin_token
    if not given:
        raise ApiError(401, "unauthorized", "An admin token is required: send 'Authorization: Bearer <token>'.",
                       headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "The admin token is not valid.")


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
