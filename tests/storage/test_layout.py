"""Script argument layouts: what Python writes into ARGV is what the Lua prelude reads back,
field by field, on a real Redis, for every layout (rows, string lists, empty lists, None)."""

from __future__ import annotations

import dataclasses
import json
import random
import typing
from typing import Any

import pytest

from gateway.storage import layout


def _value(kind: str, rnd: random.Random) -> Any:
    if kind == "number":
        return rnd.choice([None, 0, 7, 1700000000123, 2.5])
    return rnd.choice([None, "", "a", "ticket.created", "ünïcode ✓"])


def _instance(cls: type, rnd: random.Random) -> Any:
    hints = typing.get_type_hints(cls)
    described = {f.name: f for f in layout._describe(cls)}
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        spec = described[field.name]
        if spec.kind == "rows":
            row_cls = typing.get_args(hints[field.name])[0]
            values[field.name] = tuple(_instance(row_cls, rnd) for _ in range(rnd.randint(0, 3)))
        elif spec.kind == "strings":
            values[field.name] = tuple(_value("string", rnd) for _ in range(rnd.randint(0, 3)))
        else:
            values[field.name] = _value(spec.kind, rnd)
    return cls(**values)


def _expected(obj: Any) -> dict[str, Any]:
    """What the prelude should give Lua: numbers as numbers (None absent), strings with
    None as "", lists as lists."""
    out: dict[str, Any] = {}
    for spec in layout._describe(type(obj)):
        value = getattr(obj, spec.name)
        if spec.kind == "rows":
            out[spec.name] = [_expected(item) for item in value]
        elif spec.kind == "strings":
            out[spec.name] = ["" if item is None else item for item in value]
        elif spec.kind == "number":
            if value is not None:
                out[spec.name] = value
        else:
            out[spec.name] = "" if value is None else value
    return out


def _lists(value: Any) -> Any:
    # cjson writes an empty Lua table as {}: an empty list here.
    if isinstance(value, dict):
        return [] if not value else {k: _lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lists(v) for v in value]
    return value


@pytest.mark.parametrize("cls", layout.ScriptArgs.__subclasses__(), ids=lambda cls: cls.__name__)
def test_every_field_reaches_the_script_as_written(cls: type, redis_client: Any) -> None:
    script = layout.lua_prelude(cls) + "return cjson.encode(A)"
    rnd = random.Random(cls.__name__)
    for _ in range(40):
        obj = _instance(cls, rnd)
        seen = json.loads(redis_client.eval(script, 0, *obj.argv()))
        expected = _expected(obj)
        assert {k: _lists(v) for k, v in seen.items()} == {k: _lists(v) for k, v in expected.items()}
