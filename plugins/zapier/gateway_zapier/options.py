"""The ``[[sinks]] type = "zapier"`` options (the common ones are validated by the core)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ZapierOptions(Schema):
    """``api_keys``: the keys a Zap may use (header ``X-API-Key``) to manage this sink's
    subscriptions. Keep them out of the file with ``api_keys = ["${ZAPIER_API_KEY}"]``.
    ``events`` (a common option) limits which events may be subscribed."""

    api_keys = fields.List(fields.String(validate=validate.Length(min=16, max=200)), load_default=list,
                           validate=validate.Length(max=20))
