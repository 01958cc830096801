"""How the Zapier sink judges a Zap's answer: 410 means the Zap was turned off or deleted
(only that subscription goes), everything else is the reference policy."""

import pytest

from gateway import OutcomeKind, Response, Target

HOOK = "https://hooks.zapier.com/hooks/standard/1/abc/"


@pytest.fixture
def sink(make_runtime):
    runtime = make_runtime({"sinks": [{"name": "zapier", "type": "zapier", "events": ["*"],
                                       "api_keys": [{"label": "zaps", "key": "zapier-api-key-0123456789-abcdef"}]}]})
    return runtime.sinks["zapier"]


@pytest.mark.parametrize("status, kind", [
    (200, OutcomeKind.DELIVERED),
    (410, OutcomeKind.GONE),
    (404, OutcomeKind.GIVE_UP),
    (400, OutcomeKind.GIVE_UP),
    (409, OutcomeKind.GIVE_UP),
    (411, OutcomeKind.GIVE_UP),
    (429, OutcomeKind.RETRY),
    (500, OutcomeKind.RETRY),
    (503, OutcomeKind.RETRY),
])
def test_zapier_answers(sink, status, kind):
    outcome = sink.classify(Response(status, {}, b""), Target("sub_1", HOOK))
    assert outcome.kind is kind
    if kind is OutcomeKind.GONE:
        assert "turned off or deleted" in outcome.reason
        assert not outcome.pause_sink
