"""The Slack sink's message: what a channel shows for each event."""

import json
from datetime import datetime

import pytest

from gateway import ConfigError, DeliveryInfo, Event, Target

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.fixture
def sample_ticket(event_samples):
    """The sample ticket, as ticket.created carries it."""
    return event_samples["ticket.created"]["ticket"]


def slack_config(public_url="https://support.example.com", **options):
    sink = {"name": "slack", "type": "slack", "url": HOOK, "events": ["*"], **options}
    gateway = {"public_url": public_url} if public_url else {}
    return {"gateway": gateway, "sinks": [sink]}


@pytest.fixture
def render(make_runtime, event_samples):
    """Render an event through a configured Slack sink, as the engine would."""

    def go(name, data=None, public_url="https://support.example.com", **options):
        runtime = make_runtime(slack_config(public_url, **options))
        sink = runtime.sinks["slack"]
        event = Event.new(name, event_samples[name] if data is None else data)
        [target] = sink.targets(event)
        request = sink.render(event, target, DeliveryInfo(id="dlv_1", attempt=1, sink="slack"))
        assert request.url == HOOK and request.method == "POST"
        assert request.headers["Content-Type"].startswith("application/json")
        message = json.loads(request.body)
        return event, message, message["attachments"][0]

    return go


@pytest.mark.parametrize("name, colour", [
    ("ticket.created", "#2F80ED"),
    ("ticket.escalated", "#E01E5A"),
    ("ai.response.rejected", "#E01E5A"),
    ("ai.response.requires_review", "#ECB22E"),
    ("ticket.resolved", "#2EB67D"),
    ("ai.response.approved", "#2EB67D"),
    ("ticket.updated", "#9EA1A6"),
    ("feedback.received", "#9EA1A6"),
    ("sink.circuit_opened", "#E01E5A"),
    ("sink.paused", "#E01E5A"),
    ("delivery.failed", "#E01E5A"),
    ("sink.circuit_closed", "#2EB67D"),
    ("sink.resumed", "#2EB67D"),
    ("sink.config_changed", "#9EA1A6"),
])
def test_colour_by_event(render, name, colour):
    _, _, attachment = render(name)
    assert attachment["color"] == colour


def test_ticket_message_has_title_link_fields_and_time(render, sample_ticket):
    event, message, attachment = render("ticket.escalated")
    assert attachment["title"] == "TKT-2026-042: Cannot log in after password reset"
    assert attachment["title_link"] == f"https://support.example.com/tickets/{sample_ticket['id']}"
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {"Priority": "urgent", "Status": "escalated", "Category": "Account",
                      "Customer": "Jane Doe (jane.doe@example.com)"}
    assert all(f["short"] for f in attachment["fields"])
    assert attachment["text"] == sample_ticket["message"]
    assert attachment["ts"] == int(datetime.fromisoformat(event.timestamp).timestamp())
    assert message["text"] == "Ticket escalated: TKT-2026-042: Cannot log in after password reset"
    assert attachment["fallback"] == message["text"]


def test_no_link_without_public_url_and_ids_cannot_break_out_of_the_link(render, sample_ticket):
    _, _, attachment = render("ticket.created", public_url=None)
    assert "title_link" not in attachment
    odd = {"ticket": {**sample_ticket, "id": "a/b>c|d"}}
    _, _, attachment = render("ticket.created", odd, public_url="https://support.example.com/app/")
    assert attachment["title_link"] == "https://support.example.com/app/tickets/a%2Fb%3Ec%7Cd"


def test_user_text_is_escaped_but_our_mention_is_not(render, sample_ticket):
    hostile = {"ticket": {**sample_ticket, "subject": "<script>alert(1)</script> & <!channel>",
                          "message": "Tom & Jerry <@U123> <https://evil.example|click>",
                          "customer_name": "<!everyone>", "category": "a>b"}}
    _, message, attachment = render("ticket.escalated", hostile, mention={"ticket.escalated": "<!here>"})
    assert attachment["title"] == "TKT-2026-042: &lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;!channel&gt;"
    assert attachment["text"] == "Tom &amp; Jerry &lt;@U123&gt; &lt;https://evil.example|click&gt;"
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["Customer"] == "&lt;!everyone&gt; (jane.doe@example.com)" and fields["Category"] == "a&gt;b"
    assert message["text"].startswith("<!here> Ticket escalated: TKT-2026-042: &lt;script&gt;")
    # The only unescaped angle brackets left anywhere are the configured mention's.
    body = json.dumps(message)
    assert body.count("<") == 1 and body.count(">") == 1


def test_mention_only_for_configured_events_with_star_as_default(render):
    _, message, _ = render("ticket.created", mention={"ticket.escalated": "<!here>"})
    assert "<!" not in message["text"]
    _, message, _ = render("ticket.created", mention={"ticket.escalated": "<!here>", "*": "<@U42>"})
    assert message["text"].startswith("<@U42> New ticket: ")
    _, message, _ = render("ticket.escalated", mention={"ticket.escalated": "<!here>", "*": "<@U42>"})
    assert message["text"].startswith("<!here> Ticket escalated: ")


def test_long_text_is_cut_to_slacks_limits_without_splitting_entities(render, sample_ticket):
    long = {"ticket": {**sample_ticket, "subject": "S" * 200, "message": "&" * 20_000}}
    _, message, attachment = render("ticket.created", long)
    assert len(attachment["text"]) <= 3000 and attachment["text"].endswith("…")
    assert attachment["text"][:-1] == "&amp;" * ((3000 - 1) // 5)
    assert len(attachment["title"]) <= 250
    assert len(json.dumps(message, ensure_ascii=False)) < 40_000


def test_ai_response_shows_an_excerpt_and_the_reason_when_rejected(render, event_samples):
    content = "Hi Jane, your account was unlocked. " * 200
    rejected = event_samples["ai.response.rejected"]
    data = {**rejected, "ai_response": {**rejected["ai_response"], "content": content}}
    _, message, attachment = render("ai.response.rejected", data)
    assert attachment["text"].startswith("Hi Jane, your account was unlocked.")
    assert len(attachment["text"]) <= 3000
    fields = {f["title"]: f for f in attachment["fields"]}
    assert fields["Reason"]["value"] == event_samples["ai.response.rejected"]["reason"]
    assert fields["Reason"]["short"] is False
    assert fields["Confidence"]["value"] == "62%"
    assert message["text"].startswith("AI response rejected: TKT-2026-042: ")
    _, _, generated = render("ai.response.generated")
    assert "Reason" not in {f["title"] for f in generated["fields"]}


def test_feedback_reads_as_stars_comment_and_ticket(render, event_samples, sample_ticket):
    _, _, attachment = render("feedback.received")
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["Rating"] == "★★★★★ 5/5"
    assert fields["Ticket"] == "TKT-2026-042"
    assert attachment["text"] == "Quick and friendly."
    assert attachment["title_link"].endswith(f"/tickets/{sample_ticket['id']}")
    three = {"feedback": {**event_samples["feedback.received"]["feedback"], "rating": 3}}
    _, _, attachment = render("feedback.received", three)
    assert {f["title"]: f["value"] for f in attachment["fields"]}["Rating"] == "★★★☆☆ 3/5"


def test_conversation_reads_as_author_role_message_and_ticket(render):
    _, message, attachment = render("conversation.added")
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {"Author": "Jane Doe", "Role": "customer", "Ticket": "TKT-2026-042"}
    assert attachment["text"] == "Thanks, that worked!"
    assert message["text"] == "New message: TKT-2026-042: new message from Jane Doe"


def test_a_plugins_event_shows_its_data_escaped(make_runtime):
    runtime = make_runtime(slack_config())
    event = Event.new("shop.order_placed", {"order": {"id": 7, "note": "<b>fast</b> & cheap"}})
    request = runtime.sinks["slack"].render(event, Target("default", HOOK), DeliveryInfo("dlv_2", 1, "slack"))
    message = json.loads(request.body)
    [attachment] = message["attachments"]
    assert attachment["color"] == "#9EA1A6" and message["text"] == "shop.order_placed"
    assert "&lt;b&gt;fast&lt;/b&gt; &amp; cheap" in attachment["text"] and "title_link" not in attachment
    odd = Event.new("ticket.merged", {"ticket": "TKT-1"})
    request = runtime.sinks["slack"].render(odd, Target("default", HOOK), DeliveryInfo("dlv_3", 1, "slack"))
    assert json.loads(request.body)["text"] == "ticket.merged"


def test_channel_username_and_icon_are_passed_on(render):
    _, message, _ = render("ticket.created", channel="#support", username="Support bot", icon_emoji=":ticket:")
    assert (message["channel"], message["username"], message["icon_emoji"]) == ("#support", "Support bot",
                                                                                ":ticket:")
    _, plain, _ = render("ticket.created")
    assert not {"channel", "username", "icon_emoji"} & set(plain)


def test_slack_options_are_validated_with_their_path(make_runtime):
    with pytest.raises(ConfigError) as info:
        make_runtime(slack_config(icon_emoji="ticket", mention={"not an event": "<!here>"}, url="ftp://x"))
    errors = info.value.errors
    assert "sinks[0].icon_emoji" in errors and "sinks[0].url" in errors
    assert any(path.startswith("sinks[0].mention") for path in errors)


def test_slack_sinks_default_to_one_message_per_second(make_runtime):
    runtime = make_runtime(slack_config())
    assert runtime.sink_config("slack").rate_limit == 1.0
    runtime = make_runtime(slack_config(rate_limit=0.5))
    assert runtime.sink_config("slack").rate_limit == 0.5



@pytest.mark.parametrize("name, headline", [
    ("sink.circuit_opened", "crm: circuit opened"),
    ("sink.circuit_closed", "crm: circuit closed"),
    ("sink.paused", "on-call: paused"),
    ("sink.resumed", "on-call: resumed"),
    ("delivery.failed", "crm: 37 deliveries failed"),
    ("sink.config_changed", "crm: configuration changed by admin"),
])
def test_system_events_are_alerts_saying_which_sink_and_what_happened(render, name, headline):
    _, message, attachment = render(name)
    assert message["text"] == headline and attachment["title"] == headline
    assert "title_link" not in attachment  # about a sink, not a ticket
    assert attachment["footer"] == name
    assert attachment["fields"][0]["title"] == "Sink type"


def test_system_alerts_carry_the_details_an_admin_acts_on(render, event_samples):
    _, _, opened = render("sink.circuit_opened")
    assert "http_status: HTTP 503" in opened["text"]
    _, _, closed = render("sink.circuit_closed")
    assert {"title": "Open for", "value": "9 min 30 s", "short": True} in closed["fields"]
    _, _, failed = render("delivery.failed")
    assert "dlv_9c4e1f7a2b3d4e5f6a7b8c9d0e1f2a3b (ticket.created)" in failed["text"]
    _, _, paused = render("sink.paused")
    assert "channel_is_archived" in paused["text"]
    _, _, changed = render("sink.config_changed")
    assert changed["text"].startswith('url: "https://crm.example.com/hooks/…" → "https://crm2.example.com/hooks/…"')
    # A sink name is admin text: escaped like any other.
    data = {**event_samples["sink.paused"], "sink": {"name": "<!channel>", "type": "slack"}}
    _, message, _ = render("sink.paused", data)
    assert "<!channel>" not in json.dumps(message) and "&lt;!channel&gt;: paused" in message["text"]
