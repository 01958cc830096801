"""The mutation tables stay true to the code they describe: every Lua mutant still applies
to exactly one place in its script, and every file the tables name exists. (So an edit of
a script or a test file that invalidates them fails `make test`, not a `make mutate` run an
hour later.)"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from mutation.runner import HERE, ROOT, lua_script_path, pytest_command


def table(name: str) -> dict[str, Any]:
    with (HERE / name).open("rb") as handle:
        return tomllib.load(handle)


LUA = table("lua_mutants.toml")
TARGETS = table("targets.toml")


@pytest.mark.parametrize("mutant", LUA["mutant"], ids=[m["id"] for m in LUA["mutant"]])
def test_each_lua_mutant_changes_exactly_one_place(mutant: dict[str, Any]) -> None:
    source = lua_script_path(ROOT, mutant["script"]).read_text(encoding="utf-8")
    assert source.count(mutant["original"]) == 1, f"{mutant['id']}: the original must occur once in the script"
    assert mutant["mutated"] != mutant["original"]
    assert mutant["why"] and mutant["script"] in LUA["tests"]


def test_lua_mutants_have_unique_ids_and_cover_the_four_scripts() -> None:
    ids = [m["id"] for m in LUA["mutant"]]
    assert len(ids) == len(set(ids))
    assert {m["script"] for m in LUA["mutant"]} == {"claim", "finish", "sweep", "publish"}
    assert len(ids) >= 20


def test_every_file_the_tables_name_exists() -> None:
    named = [p for m in TARGETS["module"] for p in (*m["paths"], *m["tests"])]
    named += [t for tests in LUA["tests"].values() for t in tests]
    named += [s["path"] for s in table("survivors.toml").get("survivor", []) if s["path"] != "*"]
    missing = [p for p in named if not (ROOT / p.split("::")[0]).is_file()]
    assert not missing


def test_a_mutants_tests_run_alone_stop_at_the_first_failure_and_skip_the_slow_ones() -> None:
    command = pytest_command(["tests/test_signing.py"])
    assert "-x" in command and "not slow and not browser" in command and command[-1] == "tests/test_signing.py"
    assert Path(command[0]).name.startswith("python")
