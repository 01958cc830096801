"""Payload templates: a sink's request body (and header values) from a Jinja2 template,
rendered in a sandbox with bounds. Part of the plugin API: a sink type offers templates by
compiling its options with :class:`PayloadTemplate` (validate them with
:func:`template_field`) and rendering in ``render``; the generic webhook's ``body_template``
is one. ``POST /api/templates/preview`` renders through the same code.

A template sees ``event`` (the envelope: ``event``, ``timestamp``, ``data``), ``data``,
``ticket`` (``data.ticket``, when the event has one) and ``delivery`` (``id``, ``attempt``,
``sink``). ``tojson`` writes a value as compact JSON (a missing one as ``null``), which is
how values go into a JSON body safely::

    {"title": {{ ticket.subject|tojson }}, "priority": {{ ticket.priority|tojson }},
     "link": {{ ("https://support.example.com/t/" ~ ticket.id)|tojson }}}

The sandbox (Jinja2's ``ImmutableSandboxedEnvironment``): no attribute starting with ``_``
(so no ``''.__class__.__mro__``, no ``cycler.__init__.__globals__``: an error, not an empty
string), no mutation of lists and dicts, no file, environment or import access (a template
only has the variables above). Bounds, so a template can hold neither a worker nor its
memory: the output is at most :data:`MAX_OUTPUT_BYTES`; every string or list made while
rendering (repetition, concatenation, ``join``, ``replace``, padding, formatting widths) at
most that size; :data:`MAX_STEPS` loop iterations, calls and filters per render
(``range`` itself stops at 100,000); :data:`MAX_RENDER_SECONDS` of rendering. Breaking a
bound, like any error while rendering, raises :class:`TemplateError` (``template_error``):
for a delivery, a configuration error that fails it at once, replayable once the template is
fixed (:class:`gateway.sinks.RenderFailed`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import json
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from marshmallow import ValidationError, fields

from gateway.sinks import RenderFailed

if TYPE_CHECKING:  # pragma: no cover
    from jinja2 import Template

    from gateway.events import Event
    from gateway.sinks import DeliveryInfo

MAX_TEMPLATE_CHARS = 65_536
"""Characters of one template's source."""
MAX_OUTPUT_BYTES = 262_144
"""Bytes of a rendered body (256 KiB); also the largest string or list made while rendering."""
MAX_STEPS = 100_000
"""Loop iterations, calls, filters and operators of one render."""
MAX_RENDER_SECONDS = 1.0
"""Wall time of one render."""
JSON_CONTENT_TYPE = "application/json"
TEMPLATE_ERROR = "template_error"
"""The error code of a template that fails (``RenderFailed.code``, the API's ``error``)."""
_NAME = "<template>"
_LOOP = "__gw_loop__"
_CONCAT = "__gw_concat__"
_FORMAT_NUMBER = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d*)(?:\.(\d*))?")
# str methods a template may call (the sandbox refuses the others): none that makes a
# string bigger than its arguments say.
_STR_METHODS = frozenset({
    "capitalize", "casefold", "count", "endswith", "find", "format", "index", "isalnum", "isalpha", "isdigit",
    "islower", "isnumeric", "isspace", "isupper", "join", "lower", "lstrip", "partition", "removeprefix",
    "removesuffix", "replace", "rfind", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith",
    "strip", "swapcase", "title", "upper",
})


class TemplateError(RenderFailed):
    """A template that does not compile or fails to render (``code`` ``template_error``).
    ``line`` and ``column`` (1-based, None when unknown) point into the template, or into
    the rendered output when ``where`` is ``"output"`` (not valid JSON). The column of a
    syntax error is Jinja's token found on its line: a best effort."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 where: str = "template") -> None:
        super().__init__(TEMPLATE_ERROR, message)
        self.line = line
        self.column = column
        self.where = where

    def describe(self) -> str:
        """``Line 3, column 7: message`` (as far as the position is known)."""
        place = ""
        if self.line is not None:
            place = f"Line {self.line}" + (f", column {self.column}" if self.column is not None else "")
            if self.where == "output":
                place += " of the output"
            place += ": "
        return place + self.message

    def to_json(self) -> dict[str, Any]:
        """``{"message", "line", "column", "where"}`` for an API answer."""
        return {"message": self.message, "line": self.line, "column": self.column, "where": self.where}


class _LimitExceeded(Exception):
    """A bound was broken while rendering."""


@dataclasses.dataclass
class _Budget:
    deadline: float
    steps: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("gateway_template_budget", default=None)


def _step() -> None:
    budget = _BUDGET.get()
    if budget is None:  # the compiler folding constants: only the size bounds apply
        return
    budget.steps += 1
    if budget.steps > MAX_STEPS:
        raise _LimitExceeded(f"the template took more than {MAX_STEPS} steps (loop iterations, calls, filters)")
    if budget.steps % 128 == 0 and time.monotonic() > budget.deadline:
        raise _LimitExceeded(f"the template took more than {MAX_RENDER_SECONDS:g} s to render")


def _weight(value: Any, limit: int = MAX_OUTPUT_BYTES) -> int:
    """Roughly how many characters ``value`` stands for once written out (stops counting
    past ``limit``)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        total = len(value)
        items = value.items() if isinstance(value, dict) else value
        for item in items:
            total += _weight(item, limit - total)
            if total > limit:
                break
        return total
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3 + 1
    return 8


def _bounded(value: Any, what: str = "a value") -> Any:
    if _weight(value) > MAX_OUTPUT_BYTES:
        raise _LimitExceeded(f"{what} would be larger than {MAX_OUTPUT_BYTES} characters")
    return value


def _small_numbers(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_OUTPUT_BYTES:
            raise _LimitExceeded(f"the number {value} is too large here (at most {MAX_OUTPUT_BYTES})")


def _check_format(text: str) -> None:
    """Refuse a format string whose width or precision alone would make a huge string."""
    numbers: list[str] = []
    for match in _PERCENT_SPEC.finditer(text):
        numbers.extend(n for n in match.groups() if n)
    try:
        for _, _, spec, _ in string.Formatter().parse(text):
            numbers.extend(_FORMAT_NUMBER.findall(spec or ""))
    except ValueError:
        pass  # not a valid {} format: str.format will say so
    _small_numbers(int(n) for n in numbers)


def _loop(iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: one step per item."""
    for item in iterable:
        _step()
        yield item


def _concat(parts: list[Any]) -> str:
    """The ``~`` operator, bounded."""
    _bounded(parts, "a ~ concatenation")
    return "".join(str(part) for part in parts)


def _tojson(value: Any) -> str:
    """Compact JSON of ``value``; a missing value is ``null``."""
    _bounded(value, "tojson's input")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _step()
        _small_numbers((*args, *kwargs.values()))
        if name in ("join", "string", "indent", "replace", "center", "wordwrap", "format", "list"):
            # Filters whose output can outgrow their input: judge the input first.
            for value in (*args, *kwargs.values()):
                if isinstance(value, (str, list, tuple, dict, set)):
                    _bounded(value, f"the input of |{name}")
            if name == "replace":
                _check_replace(*[a for a in args if isinstance(a, str)][:3])
            if name == "indent":
                text = next((a for a in args if isinstance(a, str)), "")
                width = next((a for a in args[1:] if isinstance(a, int) and not isinstance(a, bool)), 4)
                _bounded_size(len(text) + (text.count("\n") + 1) * width, "|indent's output")
            if name == "format":
                text = next((a for a in args if isinstance(a, str)), "")
                _check_format(text)
        return _bounded(func(*args, **kwargs), f"the output of |{name}")

    return bounded


def _bounded_size(size: int, what: str) -> None:
    if size > MAX_OUTPUT_BYTES:
        raise _LimitExceeded(f"{what} would be larger than {MAX_OUTPUT_BYTES} characters")


def _check_replace(text: str = "", old: str = "", new: str = "") -> None:
    occurrences = text.count(old) if old else len(text) + 1
    _bounded_size(len(text) + occurrences * max(0, len(new) - len(old)), "the result of replace")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the gateway's bounds (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "//", "/", "-"})

    def __init__(self) -> None:
        super().__init__(undefined=ChainableUndefined, autoescape=False, finalize=self._finalize,
                         keep_trailing_newline=True)
        for name, func in list(self.filters.items()):
            self.filters[name] = _bounded_filter(name, func)
        self.filters["tojson"] = _bounded_filter("tojson", _tojson)
        # lipsum(n) writes n paragraphs; namespace() lets a loop accumulate state. Neither
        # is needed to shape a payload.
        self.globals.pop("lipsum", None)
        self.globals.pop("namespace", None)
        self.globals[_LOOP] = _loop
        self.globals[_CONCAT] = _concat

    @staticmethod
    def _finalize(value: Any) -> Any:
        # Every {{ }} goes through here before it is written out.
        return _bounded(value, "a {{ }} value")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _step()
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
                    _bounded_size(_weight(sequence) * max(0, times), "a * repetition")
            if isinstance(left, int) and isinstance(right, int):
                _bounded_size((left.bit_length() + right.bit_length()) // 3, "a * product")
        elif operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64 and isinstance(left, (int, float)) and abs(left) > 1:
                raise _LimitExceeded(f"{left} ** {right} is too large")
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * max(0, right) > 4096:
                raise _LimitExceeded(f"{left} ** {right} is too large")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            _bounded(right, "the values of a % format")
            _small_numbers(right if isinstance(right, tuple) else (right,))
        elif operator == "+":
            _bounded_size(_weight(left) + _weight(right), "a + result")
        return _bounded(self.binop_table[operator](left, right), f"a {operator} result")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - as Jinja's
        _step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(owner, str):
            if __obj.__name__ == "join":
                _bounded(args[0] if args else (), "str.join's input")
            elif __obj.__name__ == "replace":
                _check_replace(owner, *[a for a in args if isinstance(a, str)][:2])
        _small_numbers((*args, *kwargs.values()))
        return _bounded(super().call(__context, __obj, *args, **kwargs), "a call's result")

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and callable(value) and attr not in _STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja's sandbox answers an unsafe attribute with an undefined value that only fails
        # when used in some ways (it prints as ""): refuse it outright instead.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped


_ENVIRONMENT = _Sandbox()


def _guard(tree: nodes.Template) -> nodes.Template:
    """Route every loop's items and every ``~`` through the bounded helpers."""
    def swap(node: nodes.Node) -> nodes.Node:
        if isinstance(node, nodes.For):
            node.iter = nodes.Call(nodes.Name(_LOOP, "load"), [node.iter], [], None, None, lineno=node.lineno)
        elif isinstance(node, nodes.Concat):
            node = nodes.Call(nodes.Name(_CONCAT, "load"), [nodes.List(node.nodes, lineno=node.lineno)], [], None,
                              None, lineno=node.lineno)
        for field in node.fields:
            value = getattr(node, field, None)
            if isinstance(value, nodes.Node):
                setattr(node, field, swap(value))
            elif isinstance(value, list):
                value[:] = [swap(item) if isinstance(item, nodes.Node) else item for item in value]
        return node

    swapped = swap(tree)
    swapped.set_environment(_ENVIRONMENT)
    assert isinstance(swapped, nodes.Template)
    return swapped


class PayloadTemplate:
    """A compiled template. Compile once (a sink's constructor), render per delivery."""

    def __init__(self, source: str, template: Template) -> None:
        self.source = source
        self._template = template

    @classmethod
    def compile(cls, source: str) -> PayloadTemplate:
        """Compile ``source``; :class:`TemplateError` with the line (and column) of a
        syntax error."""
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateError(f"The template is longer than {MAX_TEMPLATE_CHARS} characters.")
        try:
            tree = _guard(_ENVIRONMENT.parse(source, filename=_NAME))
            code = _ENVIRONMENT.compile(tree, filename=_NAME)
        except TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "Syntax error.", exc.lineno,
                                _syntax_column(source, exc.lineno, exc.message or "")) from None
        except RecursionError:
            raise TemplateError("The template is nested too deeply.") from None
        return cls(source, _ENVIRONMENT.template_class.from_code(_ENVIRONMENT, code, _ENVIRONMENT.make_globals(None)))

    def render(self, variables: Mapping[str, Any]) -> str:
        """The text for ``variables``, within the bounds; :class:`TemplateError` (with the
        template's line where known) when rendering fails or breaks a bound."""
        token = _BUDGET.set(_Budget(time.monotonic() + MAX_RENDER_SECONDS))
        try:
            out: list[str] = []
            size = 0
            for chunk in self._template.generate(variables):
                size += len(chunk)
                if size > MAX_OUTPUT_BYTES:
                    raise _LimitExceeded(f"the output is larger than {MAX_OUTPUT_BYTES} bytes")
                out.append(chunk)
            text = "".join(out)
        except TemplateError:
            raise
        except _LimitExceeded as exc:
            raise TemplateError(f"Refused: {exc}.", _template_line(exc)) from None
        except SecurityError as exc:
            raise TemplateError(f"Refused by the sandbox: {exc}.", _template_line(exc)) from None
        except RecursionError as exc:
            raise TemplateError("Recursion too deep.", _template_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - whatever a template does wrong is the template's error
            raise TemplateError(f"{type(exc).__name__}: {exc}", _template_line(exc)) from None
        finally:
            _BUDGET.reset(token)
        if len(text.encode("utf-8", "surrogatepass")) > MAX_OUTPUT_BYTES:
            raise TemplateError(f"Refused: the output is larger than {MAX_OUTPUT_BYTES} bytes.")
        return text


def template_variables(event: Event, delivery: DeliveryInfo) -> dict[str, Any]:
    """What a template sees for ``event`` and ``delivery``: ``event`` (the envelope),
    ``data``, ``ticket`` (when ``data`` has one) and ``delivery`` (``id``, ``attempt``, ``sink``)."""
    variables: dict[str, Any] = {"event": event.envelope(), "data": event.data,
                                 "delivery": {"id": delivery.id, "attempt": delivery.attempt, "sink": delivery.sink}}
    ticket = event.data.get("ticket") if isinstance(event.data, Mapping) else None
    if ticket is not None:
        variables["ticket"] = ticket
    return variables


def is_json_media_type(content_type: str) -> bool:
    """True for ``application/json`` and ``application/*+json`` (any parameters, any case)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or (media.startswith("application/") and media.endswith("+json"))


def render_body(template: PayloadTemplate, event: Event, delivery: DeliveryInfo,
                content_type: str = JSON_CONTENT_TYPE) -> bytes:
    """The body ``template`` renders for ``event``, as UTF-8 bytes. With a JSON
    ``content_type`` the result must parse as JSON: :class:`TemplateError` (``where`` =
    ``"output"``, with the output's line and column) when it does not."""
    text = template.render(template_variables(event, delivery))
    if is_json_media_type(content_type):
        try:
            json.loads(text)
        except ValueError as exc:
            line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
            reason = getattr(exc, "msg", str(exc))
            raise TemplateError(f"The output is not valid JSON ({reason}); write values with |tojson.", line,
                                column, where="output") from None
    return text.encode("utf-8", "surrogatepass")


def template_field(**kwargs: Any) -> fields.String:
    """A marshmallow field for a template option: a string that must compile, else the
    error ``Line 3, column 7: unexpected '}'`` at the option's path (at save time, and by
    ``gateway config check``). Takes ``fields.String``'s keyword arguments."""
    return _TemplateField(**kwargs)


def is_template_field(field: fields.Field[Any]) -> bool:
    """True for a field made by :func:`template_field` (the console offers a preview of it)."""
    return isinstance(field, _TemplateField)


class _TemplateField(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            PayloadTemplate.compile(text)
        except TemplateError as exc:
            raise ValidationError(exc.describe()) from None
        return text


def _syntax_column(source: str, line: int | None, message: str) -> int | None:
    """Best effort: where on ``line`` the token the message quotes is (else the line's first
    tag), 1-based."""
    lines = source.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return None
    text = lines[line - 1]
    tag = min((i for i in (text.find("{{"), text.find("{%")) if i >= 0), default=0)
    quoted = re.findall(r"'([^']+)'", message)
    for token in reversed(quoted):
        found = text.find(token, tag)
        if found >= 0:
            return found + 1
    return tag + 1


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at (Jinja rewrites tracebacks to template lines)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _NAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
