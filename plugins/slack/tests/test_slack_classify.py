"""How the Slack sink judges Slack's answers (status codes and plain-text bodies as Slack sends them)."""

import pytest

from gateway import OutcomeKind, Response, Target
from gateway_slack.outcomes import classify
from gateway_slack.sink import SlackSink


def answer(status, body, **headers):
    return Response(status_code=status, headers={"Content-Type": "text/plain", **headers}, body=body.encode())


@pytest.mark.parametrize("status, body, kind, paused", [
    (200, "ok", OutcomeKind.DELIVERED, False),
    (400, "invalid_payload", OutcomeKind.GIVE_UP, False),
    (400, "user_not_found", OutcomeKind.GIVE_UP, False),
    (403, "action_prohibited", OutcomeKind.GIVE_UP, False),
    (403, "invalid_token", OutcomeKind.GIVE_UP, False),
    (404, "channel_not_found", OutcomeKind.GIVE_UP, False),
    (404, "no_service", OutcomeKind.GIVE_UP, True),
    (410, "channel_is_archived", OutcomeKind.GIVE_UP, True),
    (500, "rollup_error", OutcomeKind.RETRY, False),
    (502, "<html><body>Bad gateway</body></html>", OutcomeKind.RETRY, False),
    (503, "", OutcomeKind.RETRY, False),
    (429, "rate_limited", OutcomeKind.RETRY, False),
])
def test_slack_answers(status, body, kind, paused):
    outcome = classify(answer(status, body))
    assert outcome.kind is kind
    assert outcome.pause_sink is paused
    if kind is not OutcomeKind.DELIVERED:
        assert f"HTTP {status}" in outcome.reason


def test_reasons_name_slacks_error_and_what_to_do():
    archived = classify(answer(410, "channel_is_archived\n"))
    assert "channel_is_archived" in archived.reason and "resume" in archived.reason
    revoked = classify(answer(404, "no_service"))
    assert "no_service" in revoked.reason and "new incoming webhook" in revoked.reason


def test_a_body_that_is_not_a_slack_error_code_is_not_echoed():
    outcome = classify(answer(502, "<html>upstream https://hooks.slack.com/services/T/B/secret</html>"))
    assert outcome.reason == "Slack answered HTTP 502"


def test_429_is_retried_and_leaves_retry_after_to_the_core():
    # The core honours Retry-After for every retried answer (tests/test_slack_e2e.py sees it).
    outcome = classify(answer(429, "rate_limited", **{"Retry-After": "30"}))
    assert outcome.kind is OutcomeKind.RETRY and outcome.not_before is None


def test_other_client_errors_give_up_but_timeouts_retry():
    assert classify(answer(401, "nope")).kind is OutcomeKind.GIVE_UP
    assert classify(answer(408, "")).kind is OutcomeKind.RETRY


def test_the_sink_uses_the_same_verdicts():
    sink = SlackSink("slack", {"url": "https://hooks.slack.com/services/T/B/X"}, context=None)
    target = Target("default", "https://hooks.slack.com/services/T/B/X")
    assert sink.classify(answer(200, "ok"), target).kind is OutcomeKind.DELIVERED
    assert sink.classify(answer(410, "channel_is_archived"), target).pause_sink is True
    retry = sink.classify(answer(429, "rate_limited", **{"Retry-After": "1"}), target)
    assert retry.kind is OutcomeKind.RETRY


@pytest.mark.parametrize("status, body, kind, paused", [
    (503, "no_service", OutcomeKind.RETRY, False),  # Slack's own outage never pauses the sink
    (429, "channel_is_archived", OutcomeKind.RETRY, False),
    (410, "", OutcomeKind.GIVE_UP, True),  # gone, whatever the body says
    (400, "some_new_error", OutcomeKind.GIVE_UP, False),  # a client error Slack may add later
    (499, "", OutcomeKind.GIVE_UP, False),
    (302, "", OutcomeKind.GIVE_UP, False),  # redirects are not followed: as the reference policy
    (300, "", OutcomeKind.GIVE_UP, False),
    (399, "", OutcomeKind.GIVE_UP, False),
    (425, "", OutcomeKind.RETRY, False),  # too early: retry, like 408
    (500, "channel_not_found", OutcomeKind.GIVE_UP, False),  # the error code decides, not the status
])
def test_the_edges_of_slacks_answers(status, body, kind, paused):
    outcome = classify(answer(status, body))
    assert (outcome.kind, outcome.pause_sink) == (kind, paused)


@pytest.mark.parametrize("status", [300, 301, 399])
def test_a_redirect_says_it_was_not_followed(status):
    outcome = classify(answer(status, "", Location="https://hooks.slack.com/services/T0/B0/new"))
    assert outcome.kind is OutcomeKind.GIVE_UP and not outcome.pause_sink
    assert outcome.reason == f"Slack answered HTTP {status}: redirect not followed; set the URL to the final address"


def test_a_client_error_is_not_called_a_redirect():
    assert classify(answer(400, "")).reason == "Slack answered HTTP 400"


def test_only_a_429_is_called_rate_limited():
    assert "rate limited" in classify(answer(429, "")).reason
    assert "rate limited" not in classify(answer(503, "")).reason
