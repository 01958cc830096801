"""API errors: a stable code, a human message, optional per-field messages. Never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Response, jsonify


class ApiError(Exception):
    """Raise from a view; the app turns it into ``{"error", "message", "fields"}``."""

    def __init__(self, status: int, code: str, message: str, fields: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
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


def redis_unavailable() -> ApiError:
    """Redis is down: ask the client to come back, and say nothing was stored."""
    return ApiError(503, "storage_unavailable", "Storage is temporarily unavailable; nothing was stored. "
                    "Retry after the number of seconds in Retry-After.", headers={"Retry-After": "5"})


def internal_error() -> ApiError:
    """A bug, not the caller's fault: the answer says so, without a traceback."""
    return ApiError(500, "internal_error", "An unexpected error occurred.")
