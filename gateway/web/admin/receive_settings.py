"""Receive settings: the receive endpoint's secret (set / not set / from the config file),
rotating it (shown once; the previous one accepted until a time), and the guide's signed
senders filled in with this gateway's URL. Through :mod:`gateway.integrations.receive_secret`,
the functions ``/api/receive-secret`` uses."""

from __future__ import annotations

from flask import render_template, request

from gateway.digits import is_ascii_digits
from gateway.errors import ApiError
from gateway.integrations import receive_secret
from gateway.web.admin import snippets
from gateway.web.admin.blueprint import bp, config_name, runtime
from gateway.web.admin.manage import OVERLAPS
from gateway.web.auth import current_actor


def base_url() -> str:
    """This gateway's URL as senders reach it: ``gateway.public_url``, else what the browser used."""
    return runtime().settings.public_url or request.host_url


def _page(status: int = 200, secret: str | None = None, until: float | None = None,
          error: str | None = None) -> tuple[str, int]:
    rt = runtime()
    state = receive_secret.status(rt)
    return render_template("admin/receive_settings.html", title="Receive settings", state=state,
                           source_name=config_name(), secret=secret, valid_until=until, error=error,
                           endpoint=base_url().rstrip("/") + snippets.RECEIVE_PATH,
                           senders=snippets.senders(base_url(), secret if secret else None),
                           overlaps=OVERLAPS), status


@bp.route("/receive")
def receive_settings() -> tuple[str, int]:
    """Where tickets come in, and whether they must be signed."""
    return _page()


@bp.route("/receive/rotate", methods=["POST"])
def receive_rotate() -> tuple[str, int]:
    """Set a new receive secret and show it, with the senders filled in for it, once."""
    choice = request.form.get("overlap", "")
    overlap = int(choice) if is_ascii_digits(choice) else None
    try:
        secret, until = receive_secret.rotate(runtime(), current_actor(), overlap)
    except ApiError as error:
        return _page(error.status, error=error.message)
    return _page(secret=secret, until=until)
