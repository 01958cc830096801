"""The add / edit integration form, generated from the sink type's options schema.

A sink type's ``options_schema`` (marshmallow) is the whole description of its form: every
field becomes an input (required ones first), its ``metadata`` gives the label and the help
text, ``SinkType.secret_options`` become password inputs, a ``validate.OneOf`` a select, a
list several inputs, a dict of strings ``Name: value`` lines. The common keys (retry
schedule, in-flight cap, timeout, rate limit, ordering...) come the same way from the
core's own :class:`gateway.config.SinkCommon`, under "Advanced". So a third-party plugin
gets a working form without a line of console code.

The form only turns what the browser sent into a ``[[sinks]]`` table (JSON types, as the API
would receive them): validation is the store's (:mod:`gateway.integrations.store`), the
same schemas and messages as ``POST /api/sinks``; its 422 ``fields`` (dotted paths) are
put back next to the inputs they are about.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from marshmallow import Schema, fields, validate
from werkzeug.datastructures import MultiDict

from gateway.config import SinkCommon
from gateway.sinks import SinkType
from gateway.templates import is_template_field

ADVANCED_KEYS = ("retry_schedule", "max_in_flight", "timeout", "rate_limit", "failure_threshold", "ordering")
"""The common keys under "Advanced" (name, events and enabled have their own places; the
secret is generated, and changed by rotating it)."""
GENERAL = "(form)"
"""Where messages not about one input are shown: the top of the form."""
EXTRA_LIST_INPUTS = 2
_SPLIT_NUMBERS = re.compile(r"[\s,;]+")
_PATH_HEAD = re.compile(r"[.\[]")
_INDEX = re.compile(r"\[(\d+)\]")
_DELIVERY_DEFAULTS = ("retry_schedule", "max_in_flight", "timeout", "failure_threshold")
"""Common keys whose default is the ``[delivery]`` section's value of the same name."""


@dataclasses.dataclass
class Input:
    """One input of the form, as the template draws it."""

    name: str
    label: str
    kind: str
    """text, url, password, integer, number, numbers, select, checkbox, list, mapping, json
    or template (a payload template: a text area with a "Preview" button)."""
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    secret: bool = False
    placeholder: str = ""
    value: Any = None
    """What the input shows: a string, a list of strings (list), a bool (checkbox)."""
    errors: list[str] = dataclasses.field(default_factory=list)
    default: Any = None
    """The value a sink without this key has (so an edit that leaves it so changes nothing)."""

    @property
    def values(self) -> list[str]:
        """A list input's values, with room to add more (the script adds further inputs)."""
        given = [str(v) for v in self.value or []]
        return given + [""] * max(EXTRA_LIST_INPUTS - (len(given) > 0), 1)


@dataclasses.dataclass
class Inputs:
    """Every input of a type's form, in the groups the page shows them in."""

    options: list[Input]
    """The type's own options."""
    filter: Input
    """The content filter, shown with its tester."""
    advanced: list[Input]
    """The common keys under "Advanced"."""

    @property
    def all(self) -> list[Input]:
        """Every input, for what is done to each alike (fill, keep, read, place errors)."""
        return [*self.options, self.filter, *self.advanced]


class FormProblem(ValueError):
    """What the browser sent cannot even be put into the table (e.g. a header line without
    a colon); validation proper is the store's."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _label(name: str, field: fields.Field) -> str:
    return str(field.metadata.get("label") or name.replace("_", " ").capitalize())


def _help(field: fields.Field) -> str:
    return str(field.metadata.get("description") or field.metadata.get("help") or "")


def _choices(field: fields.Field) -> tuple[str, ...]:
    for validator in field.validators:
        if isinstance(validator, validate.OneOf):
            return tuple(str(choice) for choice in validator.choices)
    return ()


def _kind(field: fields.Field, secret: bool) -> str:
    if _choices(field):
        return "select"
    if isinstance(field, fields.Boolean):
        return "checkbox"
    if isinstance(field, fields.Integer):
        return "integer"
    if isinstance(field, fields.Number):
        return "number"
    if isinstance(field, fields.List):
        if isinstance(field.inner, fields.Number):
            return "numbers"
        if isinstance(field.inner, (fields.Dict, fields.Nested, fields.List)):
            return "json"
        return "list"
    if isinstance(field, fields.Dict):
        value_field = field.value_field
        return "mapping" if value_field is None or isinstance(value_field, fields.String) else "json"
    if isinstance(field, (fields.Nested, fields.Raw)) and not isinstance(field, (fields.String, fields.URL)):
        return "json"
    if secret:
        return "password"
    if is_template_field(field):
        return "template"
    if isinstance(field, fields.URL):
        return "url"
    return "text"


def _default(field: fields.Field) -> Any:
    default = field.load_default
    if callable(default):
        default = default()
    return None if default is fields.missing_ else default


def _placeholder(kind: str, default: Any) -> str:
    if default in (None, "", [], {}):
        return ""
    if kind == "numbers" and isinstance(default, (list, tuple)):
        return ", ".join(_number_text(v) for v in default)
    if kind in ("integer", "number", "text", "url", "select"):
        return str(default)
    return ""


def _number_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def option_inputs(sink_type: SinkType) -> list[Input]:
    """The type's own options, required ones first (in the schema's order otherwise)."""
    schema: Schema = sink_type.options_schema()
    inputs = []
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        secret = name in sink_type.secret_options
        kind = _kind(field, secret)
        default = _default(field)
        inputs.append(Input(name=name, label=_label(name, field), kind=kind, required=bool(field.required),
                            help=_help(field),
                            choices=_choices(field), secret=secret,
                            placeholder="" if secret else _placeholder(kind, default),
                            value=bool(default) if kind == "checkbox" else default if kind == "select" else None,
                            default=default))
    return sorted(inputs, key=lambda i: not i.required)


def advanced_inputs(delivery: Any, sink_type: SinkType) -> list[Input]:
    """The common keys under "Advanced", with the gateway's defaults as placeholders."""
    schema = SinkCommon()
    inputs = []
    for name in ADVANCED_KEYS:
        field = schema.fields[name]
        kind = _kind(field, False)
        default: Any = getattr(delivery, name) if name in _DELIVERY_DEFAULTS else _default(field)
        if name == "rate_limit":
            default = sink_type.default_rate_limit
        placeholder = _placeholder(kind, default) or ("none" if name in ("retry_schedule", "rate_limit") else "")
        inputs.append(Input(name=name, label=_label(name, field), kind=kind, help=_help(field),
                            choices=_choices(field), placeholder=placeholder,
                            value=_default(field) if kind == "select" else None, default=_default(field)))
    return inputs


def filter_input() -> Input:
    """The content ``filter`` (a common key, :class:`gateway.config.SinkCommon`): a JSON text
    area, which the form shows beside a sample event and a "Test filter" button."""
    field = SinkCommon().fields["filter"]
    return Input(name="filter", label="Content filter", kind="json", help=_help(field))


def fill(inputs: Iterable[Input], table: Mapping[str, Any]) -> None:
    """Show a stored sink's values (never a secret one: those stay blank, "keep as is")."""
    for item in inputs:
        if item.secret or item.name not in table:
            continue
        value = table[item.name]
        if item.kind == "checkbox":
            item.value = bool(value)
        elif item.kind == "list":
            item.value = [v if isinstance(v, str) else json.dumps(v) for v in value or []]
        elif item.kind == "numbers":
            item.value = ", ".join(_number_text(v) for v in value) if value else "none"
        elif item.kind == "mapping":
            item.value = "\n".join(f"{k}: {v}" for k, v in (value or {}).items())
        elif item.kind == "json":
            item.value = json.dumps(value, indent=2)
        else:
            item.value = "" if value is None else _number_text(value)


def keep_sent(inputs: Iterable[Input], form: MultiDict[str, str]) -> None:
    """Show again what the browser sent (after a refusal), secrets excepted."""
    for item in inputs:
        if item.secret:
            continue
        if item.kind == "checkbox":
            item.value = item.name in form
        elif item.kind == "list":
            item.value = [v for v in form.getlist(item.name) if v.strip()]
        else:
            item.value = form.get(item.name, "")


def _number(text: str, integer: bool) -> Any:
    try:
        return int(text) if integer else _plain_number(float(text))
    except ValueError:
        return text  # the schema says what is wrong with it, in the API's words


def _plain_number(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def value_of(item: Input, form: MultiDict[str, str]) -> Any:
    """The JSON value an input stands for; None when it was left blank (the default)."""
    if item.kind == "checkbox":
        return item.name in form
    if item.kind == "list":
        values = [v.strip() for v in form.getlist(item.name) if v.strip()]
        return values or None
    text = (form.get(item.name) or "").strip()
    if not text:
        return None
    if item.kind == "integer":
        return _number(text, True)
    if item.kind == "number":
        return _number(text, False)
    if item.kind == "numbers":
        if text.lower() == "none":
            return []
        return [_number(part, False) for part in _SPLIT_NUMBERS.split(text) if part]
    if item.kind == "mapping":
        pairs = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            key, colon, rest = line.partition(":")
            if not colon or not key.strip():
                raise FormProblem(item.name, f"Write one 'Name: value' per line ({line.strip()[:40]!r} has no colon).")
            pairs[key.strip()] = rest.strip()
        return pairs
    if item.kind == "template":
        # Browsers send a text area's line breaks as CRLF: the template keeps the LF the admin typed.
        return text.replace("\r\n", "\n")
    if item.kind == "json":
        try:
            return json.loads(text)
        except ValueError:
            raise FormProblem(item.name, "Not valid JSON.") from None
    return text


def events_sent(form: MultiDict[str, str]) -> list[str]:
    """The event picker's choice: ``["*"]`` for "all events"."""
    chosen = [name for name in form.getlist("events") if name]
    return ["*"] if "*" in chosen else chosen


def place_errors(messages: Mapping[str, list[str]], inputs: Iterable[Input], extra: Iterable[str] = ()
                 ) -> dict[str, list[str]]:
    """Put each dotted path's messages on its input (``retry_schedule.2`` on
    ``retry_schedule``, prefixed with the part below it); what belongs to no input is
    returned under :data:`GENERAL` and under the other names in ``extra`` (name, events)."""
    by_name = {item.name: item for item in inputs}
    others: dict[str, list[str]] = {}
    for path, found in messages.items():
        head = _PATH_HEAD.split(path, maxsplit=1)[0]
        rest = _INDEX.sub(lambda m: f"item {int(m.group(1)) + 1}", path[len(head):]).lstrip(".")
        shown = [f"{rest}: {m}" if rest else m for m in found]
        if head in by_name:
            by_name[head].errors.extend(shown)
        elif head in extra:
            others.setdefault(head, []).extend(shown)
        else:
            others.setdefault(GENERAL, []).extend(m if path == GENERAL else f"{path}: {m}" for m in found)
    return others
