"""The audit log page: who changed which integration (or the receive secret), when, and what
changed, newest first; secrets never shown (:mod:`gateway.integrations.audit`)."""

from __future__ import annotations

from flask import render_template, request

from gateway.integrations import audit
from gateway.web.admin.blueprint import bp, runtime

PAGE_SIZE = 50


@bp.route("/audit")
def audit_log() -> str:
    """A page of entries, with a link to older ones."""
    before = request.args.get("before") or None
    try:
        entries, next_cursor = audit.read(runtime(), PAGE_SIZE, before)
    except ValueError:  # a hand-edited cursor: start from the newest
        entries, next_cursor = audit.read(runtime(), PAGE_SIZE)
        before = None
    return render_template("admin/audit.html", title="Audit log", entries=entries, next_cursor=next_cursor,
                           paged=before is not None)
