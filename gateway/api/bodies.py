"""Reading JSON request bodies for the admin API, with the same errors everywhere:
415 unless the body is JSON, 400 unless it parses to an object."""

from __future__ import annotations

from typing import Any

from flask import request

from gateway.api.receive import parse_json, read_body
from gateway.errors import ApiError


def json_object_body(example: str) -> dict[str, Any]:
    """The request body as a JSON object; ``example`` shows the expected shape in the 400."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    doc = parse_json(read_body())
    if not isinstance(doc, dict):
        raise ApiError(400, "malformed_json", f"The body must be a JSON object, e.g. {example}.")
    return doc
