"""Slack text safety: escape user text and cut it to Slack's limits.

Slack reads ``<...>`` as links and mentions and ``&`` as the start of an entity, so any
text that came from a customer or an agent must have ``&``, ``<`` and ``>`` escaped, or a
subject such as ``<!channel>`` would ping a whole channel. Our own link and mention syntax is
added around the escaped text, never escaped itself.
"""

from __future__ import annotations

ELLIPSIS = "…"
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """``text`` with ``&``, ``<`` and ``>`` replaced by Slack's entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str | None, limit: int) -> str:
    """Escape ``text`` and cut it so the escaped result has at most ``limit`` characters.

    Cutting happens on the raw text, so an entity such as ``&amp;`` is never split in half;
    a cut text ends with an ellipsis.
    """
    if not text:
        return ""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    budget = limit - len(ELLIPSIS)
    out: list[str] = []
    used = 0
    for char in text:
        piece = _ENTITIES.get(char, char)
        if used + len(piece) > budget:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out).rstrip() + ELLIPSIS


def one_line(text: str | None) -> str:
    """Collapse whitespace (titles and fields read badly with line breaks)."""
    return " ".join((text or "").split())
