"""Payload templates (gateway.templates): the sandbox refuses escapes, and no template can
hold a worker or its memory: loops, calls, sizes and time are bounded."""

from __future__ import annotations

import pytest

from gateway.events import Event
from gateway.sinks import DeliveryInfo
from gateway.templates import MAX_OUTPUT_BYTES, PayloadTemplate, TemplateError, render_body, template_variables

EVENT = Event.new("ticket.created", {"ticket": {"id": "t1", "subject": 'Say "hi"', "priority": "high",
                                                "tags": ["vip", "billing"]}})
DELIVERY = DeliveryInfo("dlv_1", 2, "crm")


def render(source: str) -> str:
    return PayloadTemplate.compile(source).render(template_variables(EVENT, DELIVERY))


def test_a_template_sees_event_data_ticket_and_delivery() -> None:
    assert render("{{ event.event }} {{ data.ticket.id }} {{ ticket.priority }} {{ delivery.id }} "
                  "{{ delivery.attempt }} {{ delivery.sink }}") == "ticket.created t1 high dlv_1 2 crm"
    assert render("{{ ticket.subject|tojson }} {{ ticket.tags|tojson }} {{ ticket.sla.due|tojson }}") == (
        '"Say \\"hi\\"" ["vip","billing"] null')
    assert render("{% for tag in ticket.tags %}{{ loop.index }}={{ tag }};{% endfor %}") == "1=vip;2=billing;"


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ ticket.tags.append('x') }}",
    "{{ ticket.update({'a': 1}) }}",
    "{{ 'a'.ljust(100) }}",
    "{% for c in ''.__class__.__base__.__subclasses__() %}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_the_sandbox_refuses_python_internals_and_mutation(source: str) -> None:
    with pytest.raises(TemplateError) as raised:
        render(source)
    assert raised.value.code == "template_error"
    assert "unsafe" in raised.value.message


BOMBS = [
    ("{% for i in range(10**9) %}x{% endfor %}", "too large"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    ("{% for a in ticket.tags %}{% for i in range(99999) %}{% endfor %}{% endfor %}", "steps"),
    ("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", "Recursion"),
    ("{{ 'x' * 10**9 }}", "larger than"),
    ("{{ ['x'] * 10**6 }}", "larger than"),
    ("{{ 2 ** 1000000 }}", "too large"),
    ("{{ 'x'|center(10**9) }}", "too large"),
    ("{{ 'x'|indent(200000) }}", None),
    ("{{ ('x\n' * 100000)|indent(100) }}", "larger than"),
    ("{{ '%1000000000d' % 1 }}", "too large"),
    ("{{ '{:>1000000000}'.format(1) }}", "too large"),
    ("{{ 'x'|replace('x', 'y' * 200000)|replace('y', 'zz') }}", "larger than"),
    ("{% set a = 'x' * 200000 %}{% set b = a ~ a %}{{ b }}", "larger than"),
    ("{% set a = ['y' * 200000] %}{{ (a + a)|join }}", "larger than"),
    ("{{ 'x' * 200000 }}{{ 'x' * 200000 }}", "output is larger"),
    ("{{ lipsum(10**6) }}", None),
]


@pytest.mark.parametrize(("source", "reason"), BOMBS)
def test_loops_sizes_and_time_are_bounded(source: str, reason: str | None) -> None:
    try:
        text = render(source)
    except TemplateError as refused:
        assert reason is None or reason in refused.message, refused.message
    else:
        assert reason is None and len(text) <= MAX_OUTPUT_BYTES


def test_syntax_errors_have_a_line_and_a_column() -> None:
    with pytest.raises(TemplateError) as raised:
        PayloadTemplate.compile('{\n  "title": {{ ticket.subject }\n}')
    assert (raised.value.line, raised.value.column) == (2, 30)
    assert raised.value.describe().startswith("Line 2, column 30: unexpected '}'")


def test_errors_while_rendering_have_the_templates_line() -> None:
    with pytest.raises(TemplateError) as raised:
        render("{\n\n{{ ticket.subject.nope() }}")
    assert raised.value.line == 3 and raised.value.where == "template"


def test_a_json_body_must_parse_and_says_where_it_does_not() -> None:
    template = PayloadTemplate.compile('{"title": {{ ticket.subject }}}')
    with pytest.raises(TemplateError) as raised:
        render_body(template, EVENT, DELIVERY)
    assert (raised.value.where, raised.value.line, raised.value.column) == ("output", 1, 11)
    assert render_body(template, EVENT, DELIVERY, "text/plain") == b'{"title": Say "hi"}'
    good = PayloadTemplate.compile('{"title": {{ ticket.subject|tojson }}}')
    assert render_body(good, EVENT, DELIVERY, "application/vnd.crm+json") == b'{"title": "Say \\"hi\\""}'
