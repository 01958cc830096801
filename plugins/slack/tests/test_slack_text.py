"""Cutting escaped text to Slack's limits never leaves a raw ``<`` or ``>`` (Slack would
read a link or a mention) nor a broken ``&`` entity, whatever the text and wherever the cut
falls."""

import json
import re

import pytest

from gateway import DeliveryInfo, Event
from gateway_slack.text import ELLIPSIS, escape, fit

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
# An entity, or any character that is not one of the three Slack reads as syntax.
WELL_FORMED = re.compile(r"(?:&amp;|&lt;|&gt;|[^&<>])*")
TEXTS = ["<!channel> & <@U123>", "a<b>c&d", "&&&&", "<<<<>>>>", "x" * 7 + "<!here>", "Tom & Jerry <tj@example.com>"]


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def check_cut(original: str, cut: str, limit: int) -> None:
    assert len(cut) <= limit, (original, limit, cut)
    assert WELL_FORMED.fullmatch(cut), (original, limit, cut)
    if cut == escape(original):
        return
    assert cut.endswith(ELLIPSIS), (original, limit, cut)
    # What is kept is the start of the text, escaped.
    assert original.startswith(unescape(cut[: -len(ELLIPSIS)])), (original, limit, cut)


@pytest.mark.parametrize("text", TEXTS)
def test_every_cut_of_escaped_text_is_well_formed(text: str) -> None:
    # Every limit from "only the ellipsis fits" to "nothing needs cutting", so a cut falls
    # before, inside and after each entity.
    for repeat in (1, 3):
        original = text * repeat
        for limit in range(1, len(escape(original)) + 2):
            check_cut(original, fit(original, limit), limit)


def test_text_that_fits_is_only_escaped() -> None:
    assert fit("a<b>&c", 16) == "a&lt;b&gt;&amp;c"  # exactly the limit
    assert fit("a<b>&c", 15) == "a&lt;b&gt;" + ELLIPSIS
    assert fit("", 10) == "" and fit(None, 10) == ""


def test_a_cut_keeps_as_much_as_fits_and_ends_with_an_ellipsis() -> None:
    assert fit("abcdef", 4) == "abc" + ELLIPSIS
    assert fit("ab<cd", 6) == "ab" + ELLIPSIS  # "&lt;" would not fit with the ellipsis: cut before it
    assert fit("ab<cd", 7) == "ab&lt;" + ELLIPSIS
    assert fit("a&b", 4) == "a" + ELLIPSIS


def test_a_long_ticket_message_reaches_slack_cut_and_well_formed(make_runtime, event_samples):
    runtime = make_runtime({"sinks": [{"name": "slack", "type": "slack", "url": HOOK, "events": ["*"]}]})
    sink = runtime.sinks["slack"]
    ticket = {**event_samples["ticket.created"]["ticket"], "subject": "<!channel> " * 60,
              "message": "a <b> & c " * 700}
    event = Event.new("ticket.created", {"ticket": ticket})
    [target] = sink.targets(event)
    message = json.loads(sink.render(event, target, DeliveryInfo(id="dlv_1", attempt=1, sink="slack")).body)
    attachment = message["attachments"][0]
    for text in (attachment["text"], attachment["title"], attachment["fallback"], message["text"]):
        assert WELL_FORMED.fullmatch(text), text
        assert text.endswith(ELLIPSIS)
    assert "<!channel>" not in json.dumps(message)
