"""Render an event as a Slack incoming-webhook message (legacy attachments).

One attachment per message: a colour for the event, a title ``TKT-2026-001: <subject>``
linked to the ticket when the gateway's ``public_url`` is set, short fields for the
ticket's facts, the interesting text (ticket message, AI response, comment, chat message)
and ``ts`` = the event's time. A top-level ``text`` (with the configured mention) and a
``fallback`` make phone notifications read well. The gateway's system events (a sink's
circuit opened or closed, paused or resumed, deliveries failed, its configuration changed)
are alerts: ``<sink>: <what happened>``, red while something is wrong, green once fixed.
Every piece of user text is escaped and cut to Slack's limits (see :mod:`gateway_slack.text`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gateway import Event
from gateway_slack.text import escape, fit, one_line

BLUE, RED, AMBER, GREEN, GREY = "#2F80ED", "#E01E5A", "#ECB22E", "#2EB67D", "#9EA1A6"
COLORS = {
    "ticket.created": BLUE,
    "ticket.escalated": RED,
    "ai.response.rejected": RED,
    "ai.response.requires_review": AMBER,
    "ticket.resolved": GREEN,
    "ai.response.approved": GREEN,
    # The gateway's alerts about its own sinks: red while something is wrong, green when fixed.
    "sink.circuit_opened": RED,
    "sink.paused": RED,
    "delivery.failed": RED,
    "sink.circuit_closed": GREEN,
    "sink.resumed": GREEN,
}

# Slack truncates an attachment's text past a few thousand characters and refuses messages
# of 40,000 or more; fields are meant to be glanceable, so they get much less.
TEXT_LIMIT = 3000
TITLE_LIMIT = 250
SHORT_FIELD_LIMIT = 300
LONG_FIELD_LIMIT = 1500
SUMMARY_LIMIT = 500
FALLBACK_LIMIT = 300
MESSAGE_LIMIT = 40_000


def color_for(event_name: str) -> str:
    """The attachment colour of an event (grey for events without a meaning of their own)."""
    return COLORS.get(event_name, GREY)


def ticket_link(public_url: str | None, ticket_id: Any) -> str | None:
    """``{public_url}/tickets/{id}`` when both are known; the id is URL-quoted, so it can't
    break out of the link."""
    if not public_url or not ticket_id:
        return None
    return f"{public_url.rstrip('/')}/tickets/{quote(str(ticket_id), safe='')}"


def event_epoch(event: Event) -> int | None:
    """The event's time as epoch seconds (Slack's ``ts``), None if it cannot be read."""
    try:
        return int(datetime.fromisoformat(event.timestamp).timestamp())
    except (TypeError, ValueError):
        return None


def stars(rating: Any) -> str:
    """A 1-5 rating as ``★★★★☆ 4/5``."""
    try:
        value = max(0, min(5, int(rating)))
    except (TypeError, ValueError):
        return fit(str(rating), SHORT_FIELD_LIMIT)
    return "★" * value + "☆" * (5 - value) + f" {value}/5"


def _field(title: str, value: Any, short: bool = True) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    limit = SHORT_FIELD_LIMIT if short else LONG_FIELD_LIMIT
    text = one_line(str(value)) if short else str(value)
    return {"title": title, "value": fit(text, limit), "short": short}


def _customer(name: Any, email: Any) -> str | None:
    if name and email:
        return f"{name} ({email})"
    return str(name or email) if (name or email) else None


def _ticket_fields(ticket: Mapping[str, Any]) -> list[dict[str, Any] | None]:
    return [
        _field("Priority", ticket.get("priority")),
        _field("Status", ticket.get("status")),
        _field("Category", ticket.get("category")),
        _field("Customer", _customer(ticket.get("customer_name"), ticket.get("customer_email"))),
    ]


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    # Plugins' events may carry anything under these keys; render what is a mapping.
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _title(number: Any, rest: Any) -> str:
    parts = [one_line(str(p)) for p in (number, rest) if p]
    return ": ".join(parts)


@dataclasses.dataclass
class Parts:
    """What an event contributes to its attachment, before escaping and cutting."""

    ticket_id: Any
    title: str
    text: Any
    fields: list[dict[str, Any] | None]
    headline: bool = False
    """The title says it all (a system event's ``crm: circuit opened``): the notification
    text is the title alone, without the catalogue's label in front."""


def _render_ticket(data: Mapping[str, Any]) -> Parts:
    ticket = _object(data, "ticket")
    return Parts(ticket.get("id"), _title(ticket.get("ticket_number"), ticket.get("subject")), ticket.get("message"),
                 _ticket_fields(ticket))


def _render_ai(data: Mapping[str, Any]) -> Parts:
    parts = _render_ticket(data)
    ai = _object(data, "ai_response")
    confidence = ai.get("confidence")
    if isinstance(confidence, (int, float)) and not isinstance(confidence, bool):
        confidence = f"{confidence:.0%}"
    parts.text = ai.get("content")
    parts.fields += [_field("Confidence", confidence), _field("Model", ai.get("model"))]
    if data.get("reason"):
        parts.fields.append(_field("Reason", data.get("reason"), short=False))
    return parts


def _render_conversation(data: Mapping[str, Any]) -> Parts:
    message = _object(data, "conversation")
    author = message.get("author")
    title = _title(message.get("ticket_number"), f"new message from {author}" if author else "new message")
    return Parts(message.get("ticket_id"), title, message.get("message"),
                 [_field("Author", author), _field("Role", message.get("role")),
                  _field("Ticket", message.get("ticket_number"))])


def _render_feedback(data: Mapping[str, Any]) -> Parts:
    feedback = _object(data, "feedback")
    rating = stars(feedback.get("rating")) if feedback.get("rating") is not None else None
    title = _title(feedback.get("ticket_number"), f"feedback {rating}" if rating else "feedback")
    return Parts(feedback.get("ticket_id"), title, feedback.get("comment"),
                 [_field("Rating", rating), _field("Customer", feedback.get("customer_email")),
                  _field("Ticket", feedback.get("ticket_number"))])


def _render_other(data: Mapping[str, Any]) -> Parts:
    # A plugin's event: show its data as JSON rather than guess at its meaning.
    if isinstance(data.get("ticket"), Mapping):
        parts = _render_ticket(data)
        parts.text = None
        return parts
    return Parts(None, "", json.dumps(data, indent=1, ensure_ascii=False, default=str), [])


def duration(seconds: Any) -> str | None:
    """``570.4`` as ``9 min 30 s`` (None when not a number)."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return None
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs or not whole
             else ""]
    return " ".join(p for p in parts if p)


def _sink_parts(data: Mapping[str, Any], what: str, text: str | None,
                fields: list[dict[str, Any] | None]) -> Parts:
    # The gateway's system events: "<sink>: <what happened>", about a sink rather than a ticket.
    sink = _object(data, "sink")
    name = sink.get("name") or "a sink"
    target = data.get("target")
    title = f"{name}: {what}" if not target else f"{name} (target {target}): {what}"
    return Parts(None, one_line(title), text, [_field("Sink type", sink.get("type")), *fields], headline=True)


def _render_circuit_opened(data: Mapping[str, Any]) -> Parts:
    error = data.get("last_error")
    text = "Its destination kept failing" + (f" (last: {error})" if error else "") + \
        ". Its deliveries wait, without being charged attempts, until a probe gets through."
    return _sink_parts(data, "circuit opened", text, [
        _field("Status code", data.get("status_code")), _field("Probe at", data.get("probe_at"))])


def _render_circuit_closed(data: Mapping[str, Any]) -> Parts:
    return _sink_parts(data, "circuit closed", "Its destination answers again: what waited is being delivered.",
                       [_field("Open for", duration(data.get("open_seconds")))])


def _render_paused(data: Mapping[str, Any]) -> Parts:
    return _sink_parts(data, "paused", f"Paused: {data.get('reason')}. Its deliveries wait until it is resumed.",
                       [_field("Paused by", data.get("actor") or "its destination"),
                        _field("Delivery", data.get("delivery_id"))])


def _render_resumed(data: Mapping[str, Any]) -> Parts:
    held = "paused" if data.get("was_paused") else "circuit open"
    reason = data.get("paused_reason")
    return _sink_parts(data, "resumed", "What waited is being delivered.",
                       [_field("Resumed by", data.get("actor")),
                        _field("Was", f"{held}: {reason}" if reason else held)])


def _render_delivery_failed(data: Mapping[str, Any]) -> Parts:
    count = data.get("failures")
    last = _object(data, "delivery")
    error = _object(last, "error")
    what = f"{count} deliveries failed" if isinstance(count, int) and count != 1 else "a delivery failed"
    text = f"Latest: {last.get('id')} ({last.get('event')})"
    if error:
        text += f": {error.get('code')}: {error.get('message')}"
    text += ". Failed deliveries can be replayed once the destination is fixed."
    return _sink_parts(data, what, text, [_field("Since", data.get("since")),
                                          _field("Status code", last.get("status_code"))])


def _render_config_changed(data: Mapping[str, Any]) -> Parts:
    changes = _object(data, "changes")
    lines = [f"{key}: {json.dumps(_object(changes, key).get('from'), ensure_ascii=False)} → "
             f"{json.dumps(_object(changes, key).get('to'), ensure_ascii=False)}" for key in changes]
    action = data.get("action")
    done = CHANGE_ACTIONS.get(str(action), f"changed ({action})")
    return _sink_parts(data, f"{done} by {data.get('actor')}", "\n".join(lines) or None, [])


CHANGE_ACTIONS = {"create": "created", "update": "configuration changed", "enable": "enabled",
                  "disable": "disabled", "delete": "deleted", "rotate": "secret rotated"}


RENDERERS: dict[str, Callable[[Mapping[str, Any]], Parts]] = {
    "conversation.added": _render_conversation,
    "feedback.received": _render_feedback,
    "sink.circuit_opened": _render_circuit_opened,
    "sink.circuit_closed": _render_circuit_closed,
    "sink.paused": _render_paused,
    "sink.resumed": _render_resumed,
    "delivery.failed": _render_delivery_failed,
    "sink.config_changed": _render_config_changed,
}


def _renderer(event_name: str) -> Callable[[Mapping[str, Any]], Parts]:
    if event_name in RENDERERS:
        return RENDERERS[event_name]
    if event_name.startswith("ai.response."):
        return _render_ai
    if event_name.startswith("ticket."):
        return _render_ticket
    return _render_other


def mention_for(event_name: str, mentions: Mapping[str, str] | None) -> str | None:
    """The configured mention for an event (``*`` applies to events without their own)."""
    if not mentions:
        return None
    return mentions.get(event_name) or mentions.get("*")


def build_message(event: Event, options: Mapping[str, Any], public_url: str | None,
                  label: str | None = None) -> dict[str, Any]:
    """The Slack message for ``event``, as a JSON-ready dict.

    ``options`` is the sink's options (``channel``, ``username``, ``icon_emoji``,
    ``mention``); ``public_url`` is the gateway's, for the title link; ``label`` is how the
    event reads in a notification (its catalogue title, e.g. ``Ticket escalated``; the
    event's name when not given).
    """
    data = event.data if isinstance(event.data, Mapping) else {}
    parts = _renderer(event.name)(data)
    label = label or event.name
    title = parts.title or label
    summary = title if parts.headline else f"{label}: {title}" if parts.title else label
    attachment: dict[str, Any] = {
        "color": color_for(event.name),
        "fallback": fit(summary, FALLBACK_LIMIT),
        "title": fit(title, TITLE_LIMIT),
    }
    link = ticket_link(public_url, parts.ticket_id)
    if link:
        attachment["title_link"] = link
    if parts.text:
        attachment["text"] = fit(str(parts.text), TEXT_LIMIT)
    fields = [f for f in parts.fields if f]
    if fields:
        attachment["fields"] = fields
    attachment["footer"] = escape(event.name)
    ts = event_epoch(event)
    if ts is not None:
        attachment["ts"] = ts
    # The mention is the admin's own Slack syntax (<!here>, <@U123>): it must stay unescaped.
    mention = mention_for(event.name, options.get("mention"))
    text = fit(summary, SUMMARY_LIMIT)
    message: dict[str, Any] = {"text": f"{mention} {text}" if mention else text, "attachments": [attachment]}
    for key in ("channel", "username", "icon_emoji"):
        if options.get(key):
            message[key] = options[key]
    return _within_limit(message)


def _within_limit(message: dict[str, Any]) -> dict[str, Any]:
    """Shorten the attachment's text until the whole message is under Slack's limit. The
    per-part limits keep builtin events far below it; a plugin's large fields might not."""
    attachment = message["attachments"][0]
    while len(json.dumps(message, ensure_ascii=False)) >= MESSAGE_LIMIT:
        text = attachment.get("text", "")
        if len(text) > 100:
            cut = text[: len(text) // 2]
            amp = cut.rfind("&")
            if amp != -1 and ";" not in cut[amp:]:  # never leave half an entity
                cut = cut[:amp]
            attachment["text"] = cut + "…"
        elif attachment.get("fields"):
            attachment["fields"].pop()
        else:  # nothing left to shorten that we own
            break
    return message
