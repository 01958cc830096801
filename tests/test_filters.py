"""Content filters (gateway.filters): every operator, dotted and nested paths, arrays,
missing fields, invalid filters with their paths, and no event that makes one raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.filters import MAX_CONDITIONS, FilterInvalid, compile_filter

EVENT: dict[str, Any] = {
    "event": "ticket.created",
    "timestamp": "2026-01-15T10:30:00.000Z",
    "data": {"ticket": {
        "id": "4f9a", "ticket_number": "TKT-2026-17", "subject": "Refund for order 1234",
        "status": "new", "priority": "high", "customer_email": "ana@bigco.com",
        "tags": ["vip", "billing"], "score": 7, "ratio": 0.5, "escalated": False, "assignee": None,
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
    }},
}

MATCHES = [
    # plain values: equality; dotted and nested forms
    ({"event": "ticket.created"}, True),
    ({"data.ticket.priority": "high"}, True),
    ({"data.ticket.priority": "low"}, False),
    ({"data": {"ticket": {"priority": "high"}}}, True),
    ({"data.ticket": {"priority": "high", "status": "new"}}, True),
    ({"data": {"ticket.priority": "high", "ticket.status": "closed"}}, False),
    ({"data.ticket.score": 7}, True),
    ({"data.ticket.score": 7.0}, True),
    ({"data.ticket.score": "7"}, False),
    ({"data.ticket.escalated": False}, True),
    ({"data.ticket.escalated": 0}, False),
    ({"data.ticket.assignee": None}, True),
    # arrays: a plain value means "contains"; a plain list, "contains every item"
    ({"data.ticket.tags": "vip"}, True),
    ({"data.ticket.tags": "spam"}, False),
    ({"data.ticket.tags": ["billing", "vip"]}, True),
    ({"data.ticket.tags": ["billing", "spam"]}, False),
    ({"data.ticket.priority": ["high"]}, False),
    ({"data.ticket.items.sku": "A-1"}, False),  # paths do not run through arrays...
    ({"data.ticket.items.1.sku": "B-2"}, True),  # ...but a digit indexes one
    ({"data.ticket.items.5.sku": "B-2"}, False),
    ({"data.ticket.items.¹.sku": "B-2"}, False),  # a superscript is not a digit: a key (a 500 once)
    ({"data.ticket.items": {"$eq": {"sku": "A-1", "qty": 2}}}, True),
    # $eq / $neq
    ({"data.ticket.priority": {"$eq": "high"}}, True),
    ({"data.ticket.tags": {"$eq": ["vip", "billing"]}}, True),
    ({"data.ticket.tags": {"$eq": ["billing", "vip"]}}, False),
    ({"data.ticket.priority": {"$neq": "low"}}, True),
    ({"data.ticket.priority": {"$neq": "high"}}, False),
    ({"data.ticket.tags": {"$neq": "spam"}}, True),
    ({"data.ticket.tags": {"$neq": "vip"}}, False),
    # $gt $gte $lt $lte: numbers with numbers, strings with strings
    ({"data.ticket.score": {"$gt": 5}}, True),
    ({"data.ticket.score": {"$gt": 7}}, False),
    ({"data.ticket.score": {"$gte": 7}}, True),
    ({"data.ticket.score": {"$lt": 7.5}}, True),
    ({"data.ticket.score": {"$lte": 6}}, False),
    ({"data.ticket.score": {"$gt": 5, "$lt": 10}}, True),
    ({"data.ticket.ratio": {"$lt": 1}}, True),
    ({"timestamp": {"$gte": "2026-01-01"}}, True),
    ({"timestamp": {"$lt": "2026-01-01"}}, False),
    ({"data.ticket.priority": {"$gt": 1}}, False),
    ({"data.ticket.escalated": {"$lt": 1}}, False),
    ({"data.ticket.items.qty": {"$gt": 0}}, False),
    # $in / $nin
    ({"data.ticket.priority": {"$in": ["high", "urgent"]}}, True),
    ({"data.ticket.priority": {"$in": ["low", "medium"]}}, False),
    ({"data.ticket.tags": {"$in": ["enterprise", "vip"]}}, True),
    ({"data.ticket.score": {"$in": [1, 7.0]}}, True),
    ({"data.ticket.escalated": {"$in": [0, None]}}, False),
    ({"data.ticket.assignee": {"$in": [None]}}, True),
    ({"data.ticket.priority": {"$nin": ["low", "medium"]}}, True),
    ({"data.ticket.priority": {"$nin": ["high"]}}, False),
    ({"data.ticket.tags": {"$nin": ["billing"]}}, False),
    # $exist
    ({"data.ticket.priority": {"$exist": True}}, True),
    ({"data.ticket.assignee": {"$exist": True}}, True),
    ({"data.ticket.sla": {"$exist": True}}, False),
    ({"data.ticket.sla": {"$exist": False}}, True),
    ({"data.ticket.priority": {"$exist": False}}, False),
    # $regex (RE2), $startsWith, $endsWith
    ({"data.ticket.subject": {"$regex": "(?i)^refund"}}, True),
    ({"data.ticket.subject": {"$regex": "order \\d{5}"}}, False),
    ({"data.ticket.tags": {"$regex": "^bill"}}, True),
    ({"data.ticket.score": {"$regex": "7"}}, False),
    ({"data.ticket.customer_email": {"$endsWith": "@bigco.com"}}, True),
    ({"data.ticket.customer_email": {"$endsWith": ["@a.com", "@b.com"]}}, False),
    ({"data.ticket.ticket_number": {"$startsWith": "TKT-2026-"}}, True),
    ({"data.ticket.ticket_number": {"$startsWith": ["X", "TKT"]}}, True),
    # $or $and $not, at the top or under a path
    ({"$or": [{"data.ticket.priority": "urgent"}, {"data.ticket.tags": "vip"}]}, True),
    ({"$or": [{"data.ticket.priority": "urgent"}, {"data.ticket.tags": "spam"}]}, False),
    ({"$and": [{"data.ticket.priority": "high"}, {"data.ticket.score": {"$gte": 5}}]}, True),
    ({"$and": [{"data.ticket.priority": "high"}, {"data.ticket.score": {"$gte": 8}}]}, False),
    ({"$not": {"data.ticket.priority": "low"}}, True),
    ({"$not": {"data.ticket.priority": "high"}}, False),
    ({"data.ticket": {"$or": [{"priority": "urgent"}, {"status": "new"}]}}, True),
    ({"data.ticket.priority": {"$not": {"$in": ["low", "medium"]}}}, True),
    ({"data.ticket.priority": {"$or": [{"$eq": "urgent"}, {"$eq": "high"}]}}, True),
    ({"event": "ticket.created", "$or": [{"data.ticket.tags": "spam"}, {"data.ticket.score": 7}]}, True),
    # a missing field matches no comparison, not even $neq or $nin; $not of one does
    ({"data.ticket.sla": "x"}, False),
    ({"data.ticket.sla": {"$neq": "x"}}, False),
    ({"data.ticket.sla": {"$nin": ["x"]}}, False),
    ({"data.ticket.sla": {"$gt": 0}}, False),
    ({"data.ticket.sla": {"$regex": ""}}, False),
    ({"data.ticket.sla": {"$not": {"$eq": "x"}}}, True),
    ({"data.ticket.subject.deeper": "x"}, False),
    ({"data.ticket.assignee.name": {"$exist": False}}, True),
    # the empty filter takes everything
    ({}, True),
]


@pytest.mark.parametrize(("spec", "expected"), MATCHES, ids=[json.dumps(s) for s, _ in MATCHES])
def test_operators_paths_and_arrays(spec: dict[str, Any], expected: bool) -> None:
    assert compile_filter(spec).matches(EVENT) is expected


INVALID = [
    ({"data.ticket.priority": {"$inn": ["high"]}}, "data.ticket.priority.$inn", "Unknown operator."),
    ({"data": {"ticket": {"priority": {"$inn": ["high"]}}}}, "data.ticket.priority.$inn", "Unknown operator."),
    ({"data.ticket.score": {"$gt": {"a": 1}}}, "data.ticket.score.$gt", "Must be a number or a string."),
    ({"data.ticket.score": {"$gt": True}}, "data.ticket.score.$gt", "Must be a number or a string."),
    ({"data.ticket.score": {"$lte": [1]}}, "data.ticket.score.$lte", "Must be a number or a string."),
    ({"data.ticket.subject": {"$regex": "(unclosed"}}, "data.ticket.subject.$regex",
     "Not a valid regular expression"),
    ({"data.ticket.subject": {"$regex": "(?<=a)b"}}, "data.ticket.subject.$regex", "Not a valid regular expression"),
    ({"data.ticket.subject": {"$regex": 3}}, "data.ticket.subject.$regex", "Must be a regular expression"),
    ({"data.ticket.subject": {"$regex": "a" * 1001}}, "data.ticket.subject.$regex", "Too long"),
    ({"data.ticket.priority": {"$in": "high"}}, "data.ticket.priority.$in", "Must be a list of values."),
    ({"data.ticket.priority": {"$nin": 1}}, "data.ticket.priority.$nin", "Must be a list of values."),
    ({"data.ticket.priority": {"$exist": "yes"}}, "data.ticket.priority.$exist", "Must be true or false."),
    ({"data.ticket.email": {"$endsWith": []}}, "data.ticket.email.$endsWith", "Must be a string or a non-empty"),
    ({"data.ticket.email": {"$startsWith": [1]}}, "data.ticket.email.$startsWith", "Must be a string or a non-empty"),
    ({"$or": {"data.ticket.priority": "high"}}, "$or", "Must be a non-empty list of conditions."),
    ({"$and": []}, "$and", "Must be a non-empty list of conditions."),
    ({"$or": [{"data.x": 1}, "high"]}, "$or[1]", "Must be an object of conditions."),
    ({"$or": [{"data.x": {"$bad": 1}}]}, "$or[0].data.x.$bad", "Unknown operator."),
    ({"$not": [{"data.x": 1}]}, "$not", "Must be an object of conditions."),
    ({"data..ticket": 1}, "data..ticket", "Empty name in the field path"),
    ({"data.ticket": {}}, "data.ticket", "Empty condition"),
    ({"data.ticket.score": float("nan")}, "data.ticket.score", "Must be a finite number."),
    ({"data.ticket.score": {"$gt": float("inf")}}, "data.ticket.score.$gt", "Must be a number or a string."),
    ({"data.ticket.opened": {"$eq": object()}}, "data.ticket.opened.$eq", "Not a JSON value"),
    ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {
        "q": 1}}}}}}}}}}}}}}}}}, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", "Nested too deeply"),
    ({f"f{i}": i for i in range(MAX_CONDITIONS + 1)}, "", "Too many conditions"),
    ([{"data.x": 1}], "", "Must be an object of conditions"),
    ({"$regex": "x"}, "$regex", "A comparison needs a field"),
    ({"$or": [{"$eq": 1}]}, "$or[0].$eq", "A comparison needs a field"),
]


@pytest.mark.parametrize(("spec", "path", "message"), INVALID, ids=[p or "(root)" for _, p, _ in INVALID])
def test_invalid_filters_name_the_path_inside_the_filter(spec: Any, path: str, message: str) -> None:
    with pytest.raises(FilterInvalid) as raised:
        compile_filter(spec)
    assert path in raised.value.errors, raised.value.errors
    assert any(m.startswith(message) for m in raised.value.errors[path]), raised.value.errors


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FilterInvalid) as raised:
        compile_filter({"a": {"$inn": 1}, "b": {"$gt": {}}, "$or": [{"c": {"$regex": "("}}]})
    assert set(raised.value.errors) == {"a.$inn", "b.$gt", "$or[0].c.$regex"}


def test_a_regex_runs_in_linear_time_whatever_the_pattern() -> None:
    # (a+)+$ backtracks exponentially in Python's re on "aaa...b"; RE2 answers at once.
    evil = compile_filter({"data.text": {"$regex": "(a+)+$"}})
    assert evil.matches({"data": {"text": "a" * 50_000 + "b"}}) is False


def test_equal_filters_compare_equal() -> None:
    assert compile_filter({"a": 1, "b": {"$in": [1, 2]}}) == compile_filter({"b": {"$in": [1, 2]}, "a": 1})
    assert compile_filter({"a": 1}) != compile_filter({"a": 2})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["event", "data", "ticket", "priority", "tags", "0", "1", "x"]), children, max_size=4),
    max_leaves=25)

FILTERS = [compile_filter(spec) for spec, _ in MATCHES] + [compile_filter({
    "data.ticket.tags.0": {"$in": [None, True, 1, "x", [1], {"a": 1}]},
    "data": {"$or": [{"ticket": {"$eq": {"x": [1]}}}, {"0": {"$not": {"$regex": "x", "$lt": "z"}}}]},
})]


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_a_filter_never_raises_on_any_json_event(event: Any) -> None:
    for event_filter in FILTERS:
        assert event_filter.matches(event) in (True, False)
        assert event_filter.matches({"event": "x", "timestamp": "t", "data": event}) in (True, False)
