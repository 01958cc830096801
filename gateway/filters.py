"""Content filters: which events a sink takes, judged by what they contain.

A sink's ``filter`` option is a JSON object matched against the event's envelope
``{"event", "timestamp", "data"}``, in the syntax Convoy and Hookdeck users know::

    {"data.ticket.priority": {"$in": ["high", "urgent"]}}
    {"data": {"ticket": {"tags": "vip", "subject": {"$regex": "(?i)refund"}}}}
    {"$or": [{"data.ticket.priority": "urgent"}, {"data.ticket.customer_email": {"$endsWith": "@bigco.com"}}]}

Keys are field paths (dotted, nested objects, or both; a digit segment indexes an array)
or operators. Every key of an object must hold (AND). A plain value means equality, or
"contains" when the field is an array (a plain list: contains every item). Operators:
``$eq $neq $gt $gte $lt $lte $in $nin $exist $regex $startsWith $endsWith``, and ``$or``
/ ``$and`` (a list of conditions) and ``$not`` (one condition), which apply at the path
they are written under. A missing field never matches a comparison, ``$neq`` and ``$nin``
included; only ``$exist: false`` matches it. When the field is an array, a comparison holds
when it holds for one of its elements (``$neq`` / ``$nin``: for none of them).

A filter is compiled once (when the config is loaded or a sink is saved) into a tree of
small functions, so publishing an event costs a few dictionary lookups per condition.
Regular expressions run on RE2 (``google-re2``): linear time whatever the pattern and the
text, no backtracking, with a memory cap per pattern; its syntax has no look-around and no
back-references. An invalid filter raises :class:`FilterInvalid` with one message list per
path inside the filter (``data.ticket.priority.$inn: Unknown operator.``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import re2

from gateway.digits import is_ascii_digits

MAX_CONDITIONS = 200
"""Conditions (operators and plain values) one filter may hold."""
MAX_DEPTH = 16
"""How deeply objects and ``$or``/``$and``/``$not`` may nest."""
MAX_LIST = 1000
"""Items of one ``$in`` / ``$nin`` / ``$startsWith`` / ``$endsWith`` list."""
MAX_PATTERN = 1000
"""Characters of one ``$regex``."""
REGEX_MAX_MEM = 1 << 20
"""Bytes RE2 may use to compile one ``$regex`` (a pattern needing more is refused)."""

COMPARISONS = frozenset({"$eq", "$neq", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exist", "$regex",
                         "$startsWith", "$endsWith"})
LOGICAL = frozenset({"$or", "$and", "$not"})
OPERATORS = COMPARISONS | LOGICAL


class _Missing:
    """The value of a field the event does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

Check = Callable[[Any], bool]
"""A compiled condition: given the root document (the envelope), does it hold?"""


class FilterInvalid(ValueError):
    """A filter that cannot be compiled: ``errors`` maps a path inside the filter
    (``data.ticket.priority.$inn``, ``$or[1].data.x``; "" for the filter itself) to its
    messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{path or '(filter)'}: {' '.join(msgs)}" for path, msgs in self.errors.items()))


class EventFilter:
    """A compiled filter. Equal filters (same JSON) compare equal, so an unchanged sink's
    configuration compares equal after a reload."""

    __slots__ = ("_check", "_key", "spec")

    def __init__(self, spec: Mapping[str, Any], check: Check) -> None:
        self.spec: dict[str, Any] = dict(spec)
        """The filter as written (JSON-safe): what the API shows and the export writes."""
        self._check = check
        self._key = json.dumps(self.spec, sort_keys=True, separators=(",", ":"))

    def matches(self, envelope: Mapping[str, Any]) -> bool:
        """True when the event (its ``{"event", "timestamp", "data"}`` envelope) passes.
        Never raises, whatever JSON the event holds."""
        try:
            return self._check(envelope)
        except RecursionError:  # pragma: no cover - only events nested past Python's limit
            return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EventFilter) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"EventFilter({self._key})"


def compile_filter(spec: Any) -> EventFilter:
    """Compile ``spec`` (a filter as JSON) once; :class:`FilterInvalid` with every problem
    by path when it is not a valid filter."""
    errors: dict[str, list[str]] = {}
    if not isinstance(spec, dict):
        raise FilterInvalid({"": ["Must be an object of conditions, e.g. {\"data.ticket.priority\": \"high\"}."]})
    compiler = _Compiler(errors)
    checks = compiler.conditions(spec, (), "", 1, allow_empty=True)
    if compiler.count > MAX_CONDITIONS:
        errors.setdefault("", []).append(f"Too many conditions ({compiler.count}; at most {MAX_CONDITIONS}).")
    if errors:
        raise FilterInvalid(errors)
    return EventFilter(spec, _all(checks))


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Compiler:
    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        self.count = 0

    def fail(self, where: str, message: str) -> None:
        self.errors.setdefault(where, []).append(message)

    def conditions(self, obj: dict[str, Any], path: tuple[str, ...], where: str, depth: int,
                   allow_empty: bool = False) -> list[Check]:
        """Every key of ``obj`` as a check, the fields relative to ``path``."""
        if depth > MAX_DEPTH:
            self.fail(where, f"Nested too deeply (at most {MAX_DEPTH} levels).")
            return []
        if not obj and not allow_empty:
            self.fail(where, "Empty condition: give a value or an operator.")
            return []
        checks: list[Check] = []
        for key, value in obj.items():
            at = _at(where, str(key))
            if not isinstance(key, str):
                self.fail(at, "Keys must be strings.")
            elif key.startswith("$"):
                if key in LOGICAL:
                    checks.extend(self.logical(key, value, path, at, depth))
                elif key in COMPARISONS and not path:
                    self.fail(at, "A comparison needs a field: write it under a path, e.g. "
                                  f'{{"data.ticket.priority": {{"{key}": ...}}}}.')
                elif key in COMPARISONS:
                    self.count += 1
                    check = self.comparison(key, value, path, at)
                    if check is not None:
                        checks.append(check)
                else:
                    self.fail(at, "Unknown operator.")
            else:
                segments = tuple(key.split("."))
                if "" in segments:
                    self.fail(at, "Empty name in the field path (a leading, trailing or doubled '.').")
                    continue
                if isinstance(value, dict):
                    checks.extend(self.conditions(value, path + segments, at, depth + 1))
                else:
                    self.count += 1
                    if _json_problem(value, at, self):
                        continue
                    checks.append(_plain(value, _getter(path + segments)))
        return checks

    def logical(self, key: str, value: Any, path: tuple[str, ...], at: str, depth: int) -> list[Check]:
        if key == "$not":
            if not isinstance(value, dict):
                self.fail(at, "Must be an object of conditions.")
                return []
            inner = _all(self.conditions(value, path, at, depth + 1))
            return [lambda doc: not inner(doc)]
        if not isinstance(value, list) or not value:
            self.fail(at, "Must be a non-empty list of conditions.")
            return []
        if len(value) > MAX_LIST:
            self.fail(at, f"At most {MAX_LIST} conditions.")
            return []
        branches: list[Check] = []
        for index, item in enumerate(value):
            item_at = f"{at}[{index}]"
            if not isinstance(item, dict):
                self.fail(item_at, "Must be an object of conditions.")
                continue
            branches.append(_all(self.conditions(item, path, item_at, depth + 1)))
        if key == "$and":
            return [_all(branches)]
        return [_any(branches)]

    def comparison(self, op: str, operand: Any, path: tuple[str, ...], at: str) -> Check | None:
        get = _getter(path)
        if op == "$exist":
            if not isinstance(operand, bool):
                self.fail(at, "Must be true or false.")
                return None
            if operand:
                return lambda doc: get(doc) is not MISSING
            return lambda doc: get(doc) is MISSING
        if op in ("$eq", "$neq"):
            if _json_problem(operand, at, self):
                return None
            equal = _equals(operand)
            if op == "$eq":
                return _positive(get, equal)
            return _negative(get, equal)
        if op in ("$gt", "$gte", "$lt", "$lte"):
            order = _ordering(op, operand)
            if order is None:
                self.fail(at, "Must be a number or a string.")
                return None
            return _positive(get, order)
        if op in ("$in", "$nin"):
            if not isinstance(operand, list):
                self.fail(at, "Must be a list of values.")
                return None
            if len(operand) > MAX_LIST:
                self.fail(at, f"At most {MAX_LIST} values.")
                return None
            if _json_problem(operand, at, self):
                return None
            member = _membership(operand)
            return _positive(get, member) if op == "$in" else _negative(get, member)
        if op == "$regex":
            return self.regex(operand, get, at)
        # $startsWith / $endsWith: one string, or a list of them (any of them).
        texts = [operand] if isinstance(operand, str) else operand
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self.fail(at, "Must be a string or a non-empty list of strings.")
            return None
        if len(texts) > MAX_LIST:
            self.fail(at, f"At most {MAX_LIST} strings.")
            return None
        affixes = tuple(texts)
        if op == "$startsWith":
            return _positive(get, lambda v: type(v) is str and v.startswith(affixes))
        return _positive(get, lambda v: type(v) is str and v.endswith(affixes))

    def regex(self, pattern: Any, get: Callable[[Any], Any], at: str) -> Check | None:
        if not isinstance(pattern, str):
            self.fail(at, "Must be a regular expression (a string).")
            return None
        if len(pattern) > MAX_PATTERN:
            self.fail(at, f"Too long (at most {MAX_PATTERN} characters).")
            return None
        options = re2.Options()
        options.max_mem = REGEX_MAX_MEM
        options.log_errors = False
        try:
            re2.compile(pattern, options)  # for its error message
            # A one-pattern SearchSet answers "is there a match" without building a match
            # object (several times faster than compile(...).search in google-re2).
            searcher = re2.Set.SearchSet(options)
            searcher.Add(pattern)
            searcher.Compile()
        except re2.error as exc:
            self.fail(at, f"Not a valid regular expression (RE2 syntax: no look-around or back-references): {exc}.")
            return None
        found = searcher.Match
        return _positive(get, lambda v: type(v) is str and bool(found(v)))


def _json_problem(value: Any, at: str, compiler: _Compiler) -> bool:
    """Report a value JSON cannot hold (a TOML date, NaN...); True when there was one."""
    problem = _not_json(value)
    if problem:
        compiler.fail(at, problem)
    return bool(problem)


def _not_json(value: Any, depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        return f"Nested too deeply (at most {MAX_DEPTH} levels)."
    if value is None or isinstance(value, (str, bool, int)):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else "Must be a finite number."
    if isinstance(value, list):
        return next((p for p in (_not_json(v, depth + 1) for v in value) if p), "")
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return "Keys must be strings."
        return next((p for p in (_not_json(v, depth + 1) for v in value.values()) if p), "")
    return f"Not a JSON value ({type(value).__name__}): use a string, a number, true, false, null, a list or an object."


# -- evaluation ------------------------------------------------------------------------------

def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """The field at ``path`` of a document, or MISSING (a digit segment also indexes an array)."""
    if any(is_ascii_digits(segment) for segment in path):
        steps = tuple((segment, int(segment) if is_ascii_digits(segment) else None) for segment in path)
        return lambda doc: _walk(doc, steps)

    def get(doc: Any) -> Any:  # objects all the way down: the usual case, kept short
        for segment in path:
            if type(doc) is dict or isinstance(doc, Mapping):
                doc = doc.get(segment, MISSING)
                if doc is MISSING:
                    return MISSING
            else:
                return MISSING
        return doc

    return get


def _walk(doc: Any, steps: tuple[tuple[str, int | None], ...]) -> Any:
    for segment, index in steps:
        if type(doc) is dict or isinstance(doc, Mapping):
            doc = doc.get(segment, MISSING)
            if doc is MISSING:
                return MISSING
        elif index is not None and type(doc) is list:
            if index >= len(doc):
                return MISSING
            doc = doc[index]
        else:
            return MISSING
    return doc


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    frozen = tuple(checks)

    def every(doc: Any) -> bool:
        for check in frozen:  # noqa: SIM110 - a loop, not all(<generator>): this runs on every publish
            if not check(doc):
                return False
        return True

    return every


def _any(checks: list[Check]) -> Check:
    frozen = tuple(checks)

    def some(doc: Any) -> bool:
        for check in frozen:  # noqa: SIM110 - as in _all
            if check(doc):
                return True
        return False

    return some


def _in_array(value: Any, test: Callable[[Any], bool]) -> bool:
    """``value`` is an array and ``test`` passes for one of its elements."""
    if type(value) is list:
        for item in value:
            if test(item):
                return True
    return False


def _positive(get: Callable[[Any], Any], test: Callable[[Any], bool]) -> Check:
    """Holds when the field exists and passes ``test``, or is an array with an element that
    does (or passes as a whole: ``$eq`` of a list)."""
    def check(doc: Any) -> bool:
        value = get(doc)
        return value is not MISSING and (test(value) or _in_array(value, test))

    return check


def _negative(get: Callable[[Any], Any], test: Callable[[Any], bool]) -> Check:
    """``$neq`` / ``$nin``: the field exists and neither it nor any of its elements passes ``test``."""
    def check(doc: Any) -> bool:
        value = get(doc)
        return value is not MISSING and not test(value) and not _in_array(value, test)

    return check


def _plain(operand: Any, get: Callable[[Any], Any]) -> Check:
    """A plain value: equality (contains, for an array field); a plain list: an array field
    containing every item."""
    if isinstance(operand, list):
        wanted = [_equals(item) for item in operand]

        def contains_all(doc: Any) -> bool:
            value = get(doc)
            if type(value) is not list:
                return False
            return all(any(equal(item) for item in value) for equal in wanted)

        return contains_all
    return _positive(get, _equals(operand))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "other"


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``1 == 1.0`` but ``true != 1`` and ``"1" != 1``."""
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == "array":
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return bool(a == b)


def _equals(operand: Any) -> Callable[[Any], bool]:
    """A test for "equal to ``operand``", fastest for the usual strings."""
    if isinstance(operand, str):
        return lambda v: v == operand
    if isinstance(operand, bool) or operand is None:
        return lambda v: v is operand
    if isinstance(operand, (int, float)):
        return lambda v: type(v) in (int, float) and v == operand
    return lambda v: json_equal(v, operand)


def _ordering(op: str, operand: Any) -> Callable[[Any], bool] | None:
    """``$gt`` and friends: numbers with numbers, strings with strings (ISO-8601 times
    compare correctly as strings); anything else never matches."""
    if isinstance(operand, bool):
        return None
    if isinstance(operand, (int, float)):
        if not math.isfinite(operand):
            return None
        kinds: tuple[type, ...] = (int, float)
    elif isinstance(operand, str):
        kinds = (str,)
    else:
        return None
    if op == "$gt":
        return lambda v: type(v) in kinds and v > operand
    if op == "$gte":
        return lambda v: type(v) in kinds and v >= operand
    if op == "$lt":
        return lambda v: type(v) in kinds and v < operand
    return lambda v: type(v) in kinds and v <= operand


def _membership(items: list[Any]) -> Callable[[Any], bool]:
    """``$in``: equal to one of ``items`` (hashed for strings and numbers)."""
    strings = frozenset(i for i in items if isinstance(i, str))
    numbers = frozenset(i for i in items if isinstance(i, (int, float)) and not isinstance(i, bool))
    singletons = tuple(i for i in items if i is None or isinstance(i, bool))
    others = tuple(i for i in items if isinstance(i, (list, dict)))

    def member(v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return v in strings
        if kind is int or kind is float:
            return v in numbers
        if v is None or kind is bool:
            return any(v is s for s in singletons)
        return any(json_equal(v, other) for other in others)

    return member
