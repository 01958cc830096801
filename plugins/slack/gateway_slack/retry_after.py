"""Read a ``Retry-After`` header (seconds or an HTTP date).

Private stand-in until the core's ``gateway.http.parse_retry_after`` is available; the
core caps whatever time we return at its ``max_retry_after``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """When to try again, or None when the header is missing or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(when, now)
