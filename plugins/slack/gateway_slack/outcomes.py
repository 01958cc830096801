"""Classify Slack's answers to an incoming-webhook POST.

Slack answers with a status code and a short plain-text body naming the problem
(``invalid_payload``, ``channel_is_archived``, ...). Retrying a malformed message or a
missing channel only repeats the failure, so those give up at once; a revoked webhook or an
archived channel will fail for every message, so those also pause the sink until an admin
fixes it and resumes it. Rate limits and Slack's own errors are retried, after Slack's
``Retry-After`` (the core reads it). This is the reference policy of
:meth:`gateway.Sink.classify` with Slack's error codes added.
"""

from __future__ import annotations

import re

from gateway import Outcome, Response

# Errors of this one message (or of its channel override): give up, keep the sink running.
GIVE_UP = {
    "invalid_payload": "Slack could not read the message",
    "user_not_found": "the user in the message does not exist",
    "action_prohibited": "the workspace does not allow this webhook to post here",
    "invalid_token": "Slack rejected the webhook's token",
    "channel_not_found": "the channel does not exist (check the sink's channel option)",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "too_many_attachments": "the message has too many attachments",
    "no_text": "the message has no text",
    "missing_text_or_fallback_or_attachments": "the message has no text",
    "invalid_attachments": "Slack could not read the attachments",
}
# Every further message would fail the same way: give up and pause the sink.
PAUSE = {
    "no_service": "the webhook URL was revoked or is wrong: create a new incoming webhook in Slack, "
                  "update the sink's url, then resume the sink",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or use a webhook for another "
                           "channel, then resume the sink",
    "no_team": "the Slack workspace no longer exists: fix the sink's url, then resume the sink",
    "team_disabled": "the Slack workspace is disabled: fix the sink's url, then resume the sink",
    "no_active_hooks": "the webhook was disabled in Slack: re-enable it, then resume the sink",
}
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def slack_error(response: Response) -> str:
    """Slack's error code from the plain-text body, or "" when the body is not one (never
    echo arbitrary bodies into the delivery log or a pause reason)."""
    text = response.text.strip()
    return text if _ERROR_CODE.match(text) else ""


def classify(response: Response) -> Outcome:
    """Slack's verdict on one message (see the module docstring for the policy)."""
    status = response.status_code
    if response.ok:
        return Outcome.delivered()
    code = slack_error(response)
    where = f"Slack answered HTTP {status}" + (f" {code}" if code else "")
    if status == 429 or status == 503:
        return Outcome.retry(f"{where} (rate limited)" if status == 429 else where)
    if code in PAUSE:
        return Outcome.give_up(f"{where}: {PAUSE[code]}", pause_sink=True)
    if status == 410:
        return Outcome.give_up(f"{where}: the webhook is gone; fix the sink's url, then resume the sink",
                               pause_sink=True)
    if code in GIVE_UP:
        return Outcome.give_up(f"{where}: {GIVE_UP[code]}")
    if 300 <= status < 400:
        # As in the reference policy: redirects are never followed, and the same URL would
        # redirect again (retrying it only delays the give-up by the whole schedule).
        return Outcome.give_up(f"{where}: redirect not followed; set the URL to the final address")
    if status < 500 and status not in (408, 425):
        # Another client error (400-499; 2xx and 3xx are judged above): the same message
        # would be refused again.
        return Outcome.give_up(where)
    return Outcome.retry(where)
