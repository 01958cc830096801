"""One reference policy for answers: what the docs' table says, ``Sink.classify`` does, and
the generic webhook and the ``gateway new-plugin`` template follow."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import OutcomeKind, Response, Sink, Target
from gateway.cli.scaffold import scaffold
from gateway_generic_webhook.sink import GenericWebhookSink

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"
TARGET = Target("default", "https://receiver.example/hook")
STATUSES = [200, 201, 204, 301, 302, 307, 308, 400, 401, 403, 404, 405, 408, 409, 410, 413, 422, 425, 429, 451,
            500, 502, 503, 504, 599]
VERDICTS = {"delivered": OutcomeKind.DELIVERED, "gone": OutcomeKind.GONE, "retry": OutcomeKind.RETRY,
            "give up": OutcomeKind.GIVE_UP}


def documented_policy() -> dict[int, OutcomeKind]:
    """The verdict per status, read from the table under '### The reference policy': a row
    naming the status wins, then one naming its family (``5xx``), then ``any other 4xx``."""
    section = DOC.read_text(encoding="utf-8").split("### The reference policy", 1)[1].split("\n### ", 1)[0]
    rows = [(answers, VERDICTS[verdict.strip()]) for answers, verdict in
            (line.split("|")[1:3] for line in section.splitlines()[1:] if line.startswith("| ") and "---" not in line)
            if verdict.strip() in VERDICTS]

    def verdict(status: int) -> OutcomeKind:
        family = f"{status // 100}xx"
        for matches in (lambda answers: str(status) in re.findall(r"\b\d{3}\b", answers),
                        lambda answers: family in answers and "other" not in answers,
                        lambda answers: f"other {family}" in answers):
            for answers, kind in rows:
                if matches(answers):
                    return kind
        raise AssertionError(f"the reference policy's table says nothing of HTTP {status}")

    return {status: verdict(status) for status in STATUSES}


def classify_with(sink: Any, status: int) -> OutcomeKind:
    return sink.classify(Response(status, {"Retry-After": "5"}, b""), TARGET).kind


def test_the_documented_table_is_read() -> None:
    policy = documented_policy()
    assert (policy[200], policy[410], policy[503], policy[404]) == (
        OutcomeKind.DELIVERED, OutcomeKind.GONE, OutcomeKind.RETRY, OutcomeKind.GIVE_UP)


@pytest.mark.parametrize("status", STATUSES)
def test_sink_classify_is_the_documented_policy(status: int) -> None:
    assert classify_with(Sink("s", {}, None), status) is documented_policy()[status]  # type: ignore[arg-type]


@pytest.mark.parametrize("status", STATUSES)
def test_the_generic_webhook_follows_it(status: int) -> None:
    assert classify_with(GenericWebhookSink("s", {}, None), status) is documented_policy()[status]  # type: ignore[arg-type]


def test_the_template_follows_it(tmp_path: Path) -> None:
    target, _ = scaffold("policy-probe", tmp_path / "out")
    source = target / "gateway_policy_probe" / "__init__.py"
    spec = importlib.util.spec_from_file_location("gateway_policy_probe", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(spec.name, None)
    spec.loader.exec_module(module)
    sink = module.PolicyProbeSink("s", {}, None)
    assert {status: classify_with(sink, status) for status in STATUSES} == documented_policy()


def test_retry_after_is_left_to_the_core() -> None:
    outcome = Sink("s", {}, None).classify(Response(429, {"Retry-After": "120"}, b""), TARGET)  # type: ignore[arg-type]
    assert outcome.kind is OutcomeKind.RETRY and outcome.not_before is None
