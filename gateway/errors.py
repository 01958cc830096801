"""API errors: a stable code, a human message, optional per-field messages. Never a 500.

Per-field messages always come as one list per dotted path (``"data.ticket.subject"``,
``"sinks[1].url"``), however deeply the invalid field is nested: :func:`flat_messages`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify


class ConfigError(Exception):
    """Invalid configuration. ``errors`` maps a dotted field path (``sinks[1].url``) to its
    messages; ``source`` is the file they came from, when there was one. Raised by loading
    the config file, by the sinks API's validation and by :func:`gateway.testing.check_config`."""

    def __init__(self, errors: Mapping[str, list[str]], source: str | None = None) -> None:
        self.errors = dict(errors)
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        """One ``path: message`` line per problem."""
        return "\n".join(f"{path}: {msg}" for path, msgs in sorted(self.errors.items()) for msg in msgs)


class ApiError(Exception):
    """Raise from a view (a plugin's too): the app answers ``status`` with the JSON body
    ``{"error": code, "message": message, "fields": {...}}``, never a 500. ``code`` is a
    stable machine-readable string (``validation_failed``); ``fields`` per-field messages,
    which may be given as marshmallow's nested ``ValidationError.messages``: they are always
    answered as one message list per dotted path (``"data.sla.target": [...]``, see
    :func:`flat_messages`). ``headers`` are added to the response."""

    def __init__(self, status: int, code: str, message: str, fields: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields: dict[str, list[str]] = flat_messages(fields) if fields else {}
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """``{"error", "message"}``, and ``"fields"`` when there are per-field messages."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body

    def response(self) -> Response:
        """The JSON response for this error."""
        response = jsonify(self.body())
        response.status_code = self.status
        for key, value in self.headers.items():
            response.headers[key] = value
        return response


HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
              415: "unsupported_media_type"}
"""Stable codes for the errors the HTTP layer itself raises (no route, wrong method...)."""


def http_error(status: int, description: str, headers: Mapping[str, str] | None = None) -> ApiError:
    """The :class:`ApiError` for an HTTP-level error (werkzeug's 404, 405, 413, ...)."""
    return ApiError(status, HTTP_CODES.get(status, f"http_{status}"), description, headers=headers)


def too_large(limit: int) -> ApiError:
    """413 for a body over ``gateway.max_body_bytes``."""
    return ApiError(413, "payload_too_large", f"The body is larger than the limit of {limit} bytes.")


def flat_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error messages as one message list per dotted path:
    ``{"data": {"sla": {"target": [...]}}}`` -> ``{"data.sla.target": [...]}``; list
    indexes as ``[i]``; schema-level messages under the path of their schema (``(root)``
    at the top)."""
    out: dict[str, list[str]] = {}
    _flatten(messages, prefix, out)
    return out


def _flatten(messages: Any, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(messages, dict):
        for key, sub in messages.items():
            if key == "_schema":
                _flatten(sub, prefix, out)
            elif isinstance(key, int):
                _flatten(sub, f"{prefix}[{key}]", out)
            else:
                _flatten(sub, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, (dict, list)):
                _flatten(item, prefix, out)
            else:
                out.setdefault(prefix or "(root)", []).append(str(item))
    else:
        out.setdefault(prefix or "(root)", []).append(str(messages))


def redis_unavailable() -> ApiError:
    """Redis is down: ask the client to come back, and say nothing was stored."""
    return ApiError(503, "storage_unavailable", "Storage is temporarily unavailable; nothing was stored. "
                    "Retry after the number of seconds in Retry-After.", headers={"Retry-After": "5"})


def write_unconfirmed() -> ApiError:
    """Redis went away after the write was sent and before its answer came back: the write
    may exist. Same code as :func:`redis_unavailable` (a client retries both the same way),
    but the message does not claim that nothing was stored."""
    return ApiError(503, "storage_unavailable", "Storage became unavailable while the write was in progress, so it "
                    "may or may not have been stored. Retry after the number of seconds in Retry-After, with the same "
                    "Idempotency-Key: you get the original back, never a duplicate.", headers={"Retry-After": "5"})


def replication_timeout() -> ApiError:
    """``durability = "replicated"`` and the replicas did not confirm the write in time. Unlike
    :func:`redis_unavailable`, the write may exist: retrying with the same Idempotency-Key
    returns it rather than storing it twice."""
    return ApiError(503, "replication_timeout", "The write reached the primary storage but its replicas did not "
                    "confirm it in time, so it is not acknowledged; it may still exist. Retry after the number of "
                    "seconds in Retry-After, with the same Idempotency-Key: you get the original back, never a "
                    "duplicate.", headers={"Retry-After": "5"})


def idempotency_key_reused() -> ApiError:
    """An idempotency key seen before with another body (Stripe's rule): a different request,
    or a guessed key. Nothing is stored, and nothing of the first request is shown."""
    return ApiError(422, "idempotency_key_reused", "This Idempotency-Key was used before with a different "
                    "request body; send a new key for a new request, or the same body to get the original back.",
                    {"Idempotency-Key": ["Already used with a different body."]})


def too_many_attempts(seconds_left: int, what: str = "admin tokens") -> ApiError:
    """429 for an address locked out after too many wrong ``what`` (the credential throttle)."""
    return ApiError(429, "too_many_attempts", f"Too many wrong {what} from this address; "
                    "retry after the number of seconds in Retry-After.", headers={"Retry-After": str(seconds_left)})


def internal_error() -> ApiError:
    """A bug, not the caller's fault: the answer says so, without a traceback."""
    return ApiError(500, "internal_error", "An unexpected error occurred.")
