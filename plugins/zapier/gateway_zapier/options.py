"""The ``[[sinks]] type = "zapier"`` options (the common ones are validated by the core)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

MIN_KEY, MAX_KEY = 16, 200
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")


class ApiKey(fields.Field):
    """One API key: the key itself (``"${ZAPIER_API_KEY}"``), or a table naming it
    (``{label = "marketing", key = "${ZAPIER_MARKETING_KEY}"}``) so an admin can tell the
    Zaps that use it apart and revoke it alone. Loaded as ``{"label": str | None, "key": str}``
    (which loads again as it is)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        label: Any
        key: Any
        if isinstance(value, str):
            label, key = None, value
        elif isinstance(value, Mapping):
            unknown = sorted(set(value) - {"label", "key"})
            if unknown:
                raise ValidationError(f"Unknown key(s) {', '.join(unknown)}: a key's table has label and key.")
            label, key = value.get("label"), value.get("key")
            if label is not None and (not isinstance(label, str) or not LABEL.match(label)):
                raise ValidationError("label: use letters, digits, spaces, '.', '_', '@' or '-' (at most 64).")
        else:
            raise ValidationError('Give the key as a string, or as a table {label = "...", key = "..."}.')
        if not isinstance(key, str) or not MIN_KEY <= len(key) <= MAX_KEY:
            raise ValidationError(f"key: a string of {MIN_KEY} to {MAX_KEY} characters.")
        return {"label": label, "key": key}


class ZapierOptions(Schema):
    """``api_keys``: the keys a Zap may use (header ``X-API-Key``) with this sink's
    endpoints; keep them out of the file with ``"${ZAPIER_API_KEY}"``, and label them to tell
    them apart. ``create_tickets`` lets those keys create tickets (the "Create ticket"
    action). ``events`` (a common option) limits which events may be subscribed."""

    api_keys = fields.List(ApiKey(), load_default=list, validate=validate.Length(max=20), metadata={
        "label": "API keys", "description": f"Keys a Zap may use (X-API-Key), {MIN_KEY} to {MAX_KEY} characters."})
    create_tickets = fields.Boolean(load_default=True,
                                    metadata={"description": "Let these keys create tickets."})

    @validates_schema
    def _distinct(self, data: dict[str, Any], **kwargs: Any) -> None:
        keys = data.get("api_keys") or []
        labels = [k["label"] for k in keys if k["label"] is not None]
        if len(set(labels)) != len(labels):
            raise ValidationError("Each label may be used once.", "api_keys")
        if len({k["key"] for k in keys}) != len(keys):
            raise ValidationError("The same key is listed twice.", "api_keys")
