"""The admin console through Flask's test client: sign-in, form CSRF tokens, a gateway
config for it, and tickets posted to it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from support.delivery import drain_queued

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


def console_config(sinks: Sequence[dict[str, Any]], **delivery: Any) -> dict[str, Any]:
    """A gateway with the admin token, local sinks allowed, and ``sinks``."""
    return {"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True, **delivery},
            "sinks": list(sinks)}


def create_ticket(client: Any, subject: str, email: str = "jane@example.com", priority: str = "medium",
                  message: str = "Help", deliver: bool = False) -> dict[str, Any]:
    """Post a ticket to the receive endpoint; with ``deliver``, attempt its deliveries (in
    this process, as a worker would). The ticket as the 201 gives it."""
    body = {"event": "ticket.create", "data": {"subject": subject, "message": message, "customer_email": email,
                                               "priority": priority}}
    response = client.post("/api/webhooks/receive", json=body)
    assert response.status_code == 201, response.text
    if deliver:
        drain_queued(client.application.extensions["gateway"])
    return dict(response.json["ticket"])
