"""The admin console through Flask's test client: sign-in and form CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

TOKEN = "admin-token-for-tests-at-least-32-chars"


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a console page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: Any, token: str = TOKEN, next_url: str | None = None) -> Any:
    """Sign ``client`` in through the sign-in form; the response."""
    form = {"token": token, "csrf_token": csrf_from(client.get("/admin/signin").text)}
    if next_url is not None:
        form["next"] = next_url
    return client.post("/admin/signin", data=form)
