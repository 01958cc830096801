"""Reading request bodies, with the same errors everywhere: 413 over the size limit, 415
unless the body is JSON, 400 unless it parses, 422 with one message list per dotted path
when it does not validate."""

from __future__ import annotations

import json
from typing import Any

from flask import current_app, request
from marshmallow import Schema, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from gateway.errors import ApiError, flat_messages

NOT_JSON = "Send the body as JSON with Content-Type: application/json."


def is_json(content_type: str | None) -> bool:
    """True for ``application/json`` and ``application/*+json``, any parameters, any case."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def read_body() -> bytes:
    """The raw body of the current Flask request; 413 when it is over MAX_CONTENT_LENGTH,
    chunked bodies included."""
    body = request.get_data(cache=False)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # Without a Content-Length (chunked), werkzeug stops reading at the limit and returns what
    # it has, silently: a body that reaches the limit may have gone on, so it is refused.
    if request.content_length is None and limit is not None and len(body) >= limit:
        raise RequestEntityTooLarge()
    return body


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; 400 with a stable code when it is not valid JSON."""
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32.
        text = body.decode("utf-8-sig")
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "The body is not valid UTF-8.") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"The body is not valid JSON: {exc}"[:300]) from None
    # json.loads turns an unpaired "\ud800" escape into a lone surrogate, which cannot be
    # encoded for Redis later (a 500); only such escapes can produce one, so check only then.
    if "\\ud" in text.lower():
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            raise ApiError(400, "malformed_json", "The body has a \\u escape of an unpaired UTF-16 "
                           "surrogate, which is not a character.") from None
    return doc


def load_or_422(schema: Schema, data: Any, prefix: str = "", message: str = "The request body has invalid fields."
                ) -> dict[str, Any]:
    """Validate with ``schema``; 422 ``validation_failed`` with one message list per dotted
    path (under ``prefix``, e.g. ``"data"``) on failure."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_failed", message, flat_messages(exc.messages, prefix)) from None


def json_object_body(example: str) -> dict[str, Any]:
    """The current Flask request's body as a JSON object; ``example`` shows the expected
    shape in the 400."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", NOT_JSON)
    return _json_object(read_body(), example)


def optional_object_body(example: str) -> dict[str, Any] | None:
    """:func:`json_object_body` for an optional body: None when there is none (empty)."""
    raw = read_body()
    if not raw.strip():
        return None
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", NOT_JSON)
    return _json_object(raw, example)


def _json_object(raw: bytes, example: str) -> dict[str, Any]:
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise ApiError(400, "malformed_json", f"The body must be a JSON object, e.g. {example}.")
    return doc


MAX_IDEMPOTENCY_KEY = 255


def idempotency_key(headers: Any) -> str | None:
    """The Idempotency-Key header, else Standard Webhooks' webhook-id; 400 when it is empty
    or longer than 255 characters."""
    key = headers.get("Idempotency-Key") or headers.get("webhook-id")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise ApiError(400, "idempotency_key_invalid",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    return key
