"""``make mutate``: mutation testing of the critical paths.

Python modules are mutated by cosmic-ray (one session per entry of ``targets.toml``, each
mutant judged by the test files that entry names); the Lua scripts by the hand-written
mutants of ``lua_mutants.toml``. Everything runs in a sandbox, a copy of the work tree under
the output folder, imported ahead of the editable install through ``PYTHONPATH``: cosmic-ray
mutates files on disk, and the copy keeps the work tree untouched (an interrupted run leaves
no mutant behind) while the tests' own subprocesses (workers, gunicorn) import the mutant
too. One mutant at a time: the machine is shared.

The report (``report.md`` and ``report.json`` in the output folder) gives the score per
module and lists every surviving mutant with its diff; survivors explained in
``survivors.toml`` (equivalent mutants, ...) are shown with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import tomli_w

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PLUGIN_DIRS = ("plugins/generic_webhook", "plugins/slack", "plugins/zapier")
SKIPPED_DIRS = {".venv", "test-artifacts", ".git", "node_modules", "__pycache__"}


@dataclasses.dataclass
class Mutant:
    """One mutant's fate: ``killed``, ``survived`` or ``error`` (it could not be run)."""

    module: str
    path: str
    where: str
    operator: str
    outcome: str
    diff: str
    seconds: float | None = None
    why: str = ""
    accepted: str = ""
    """Why this survivor is harmless (from survivors.toml), if it is known to be."""


@dataclasses.dataclass
class ModuleResult:
    """What the mutants of one entry of targets.toml (or of one Lua script) came to."""

    name: str
    paths: list[str]
    tests: list[str]
    baseline_s: float | None = None
    mutants: list[Mutant] = dataclasses.field(default_factory=list)
    note: str = ""
    ran_at: str = ""
    pending: int = 0
    """Mutants not judged yet: the run was stopped (``--retest-survivors`` goes on with them)."""

    def count(self, outcome: str) -> int:
        return sum(1 for m in self.mutants if m.outcome == outcome)

    @property
    def score(self) -> float | None:
        judged = self.count("killed") + self.count("survived")
        return self.count("killed") / judged if judged else None


# -- the sandbox ------------------------------------------------------------------------------


def work_tree_files(root: Path) -> list[Path]:
    """The files of the work tree as git sees them (tracked, and new ones not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    return [Path(name) for name in listed if name and not SKIPPED_DIRS.intersection(Path(name).parts)
            and (root / name).is_file()]


def make_sandbox(root: Path, sandbox: Path) -> None:
    """A fresh copy of the work tree at ``sandbox``."""
    if sandbox.exists():
        shutil.rmtree(sandbox)
    for name in work_tree_files(root):
        target = sandbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def sandbox_env(sandbox: Path) -> dict[str, str]:
    """The environment that imports ``gateway`` and the bundled plugins from the sandbox,
    in this process's tests and in every process they start."""
    paths = [str(sandbox), *(str(sandbox / d) for d in PLUGIN_DIRS)]
    env = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_REDIS_URL", "GATEWAY_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # A mutant and the original can share a modification second: never trust a .pyc.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_sandbox_imports(sandbox: Path, env: dict[str, str]) -> None:
    """Fail early unless the sandbox's code is what Python imports there."""
    probe = "import gateway, gateway_slack, gateway_zapier; print(gateway.__file__, gateway_slack.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=sandbox, env=env, check=True, capture_output=True,
                         text=True).stdout
    if any(not Path(f).resolve().is_relative_to(sandbox.resolve()) for f in out.split()):
        raise SystemExit(f"mutation: the sandbox is not what gets imported ({out.strip()}); is PYTHONPATH overridden?")


def pytest_command(tests: Sequence[str]) -> list[str]:
    """The command judging a mutant: stop at the first failure, no slow or browser tests,
    one process (the machine is shared)."""
    # Without the pytest plugins these tests do not use, a run starts in a third of the time.
    unused = ("cacheprovider", "schemathesis", "hypothesispytest", "xdist", "xdist.looponfail", "anyio")
    return [sys.executable, "-m", "pytest", "-x", "-q", *(f"-pno:{name}" for name in unused),
            "-m", "not slow and not browser", *tests]


def run_tests(tests: Sequence[str], sandbox: Path, env: dict[str, str],
              timeout: float) -> tuple[bool | None, float, str]:
    """Run ``tests`` in the sandbox: (passed, seconds, output tail); passed is None on timeout."""
    started = time.monotonic()
    try:
        proc = subprocess.run(pytest_command(tests), cwd=sandbox, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - started, "timeout"
    return proc.returncode == 0, time.monotonic() - started, (proc.stdout + proc.stderr)[-3000:]


# -- Python modules: cosmic-ray ----------------------------------------------------------------


def cosmic_ray_config(module: dict[str, Any], exclude_operators: list[str],
                      worker_urls: Sequence[str] = ()) -> dict[str, Any]:
    """cosmic-ray's config for ``module``: mutants judged one at a time in this process's
    sandbox, or by the http workers at ``worker_urls`` (one mutant each at a time)."""
    distributor: dict[str, Any] = (
        {"name": "http", "http": {"worker-urls": list(worker_urls)}} if worker_urls else {"name": "local"})
    return {"cosmic-ray": {
        "module-path": module["paths"],
        "timeout": float(module["timeout"]),
        "excluded-modules": [],
        "test-command": shlex.join(pytest_command(module["tests"])),
        "distributor": distributor,
        "filters": {"operators-filter": {"exclude-operators": exclude_operators}},
    }}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def http_workers(root: Path, sandbox: Path, jobs: int, log: Any) -> Iterator[list[str]]:
    """``jobs`` cosmic-ray http workers, each mutating and testing in its own copy of the
    work tree (``<sandbox>-job<i>``), so ``jobs`` mutants are judged at once. Worth it
    because a mutant's tests mostly wait (on worker processes, servers, leases): about a
    sixth of their wall time is CPU, so a few at once fit on 2 cores. Yields their URLs."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(1, jobs + 1):
            copy = sandbox.parent / f"{sandbox.name}-job{index}"
            make_sandbox(root, copy)
            env = sandbox_env(copy)
            check_sandbox_imports(copy, env)
            port = free_port()
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "cosmic-ray"), "http-worker", "--port", str(port)],
                cwd=copy, env=env, stdout=log, stderr=log))
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            port = int(url.rsplit(":", 1)[1])
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"mutation: the cosmic-ray http worker for {url} exited (see run.log)")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"mutation: the cosmic-ray http worker for {url} did not start (see run.log)")
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_module(module: dict[str, Any], exclude_operators: list[str], sandbox: Path, sessions: Path,
               env: dict[str, str], log: Any, previous: ModuleResult | None = None,
               retest_survivors: bool = False, worker_urls: Sequence[str] = ()) -> ModuleResult:
    """One cosmic-ray session over ``module``'s files, judged by its tests. With
    ``retest_survivors`` the session of ``previous`` is kept and only its survivors (and
    mutants not judged yet) are run again, with the tests as they are now: adding a test
    can only kill more, so the killed ones stay killed."""
    result = ModuleResult(module["name"], list(module["paths"]), list(module["tests"]))
    config, session = sessions / f"{slug(module['name'])}.toml", sessions / f"{slug(module['name'])}.sqlite"
    resume = retest_survivors and session.exists() and not (previous is not None and previous.note)
    if resume:
        result.baseline_s = previous.baseline_s if previous is not None else None
        with sqlite3.connect(session) as db:  # cosmic-ray's exec runs what has no result
            db.execute("DELETE FROM work_results WHERE test_outcome IS NOT 'KILLED' AND worker_outcome != 'SKIPPED'")
    else:
        passed, seconds, output = run_tests(module["tests"], sandbox, env, module["timeout"])
        result.baseline_s = round(seconds, 1)
        if not passed:
            result.note = f"the tests fail without any mutant, so no mutant was judged:\n{output}"
            return result
        session.unlink(missing_ok=True)
    config.write_text(tomli_w.dumps(cosmic_ray_config(module, exclude_operators, worker_urls)), encoding="utf-8")
    steps: list[list[str]] = [["cosmic-ray", "init", str(config), str(session)],
                              ["cr-filter-operators", str(session), str(config)],
                              ["cr-filter-pragma", str(session)]] if not resume else []
    steps.append(["cosmic-ray", "exec", str(config), str(session)])
    bin_dir = Path(sys.executable).parent
    for tool, *rest in steps:
        step = subprocess.run([str(bin_dir / tool), *rest], cwd=sandbox, env=env, check=False, stdout=log, stderr=log)
        if step.returncode != 0:
            result.note = f"{tool} {rest[0]} failed with exit status {step.returncode} (see run.log)"
            break
    result.mutants, result.pending = read_session(module["name"], session)
    return result


def read_session(name: str, session: Path) -> tuple[list[Mutant], int]:
    """The judged mutants of a cosmic-ray session (filtered-out operators are not mutants),
    and how many are not judged yet."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    mutants = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, outcome in db.completed_work_items:
            # Filtered out, or no mutation possible at that occurrence: not a mutant.
            if outcome.worker_outcome in (WorkerOutcome.SKIPPED, WorkerOutcome.NO_TEST):
                continue
            [spec] = item.mutations
            if outcome.worker_outcome != WorkerOutcome.NORMAL:
                fate = "error"
            elif outcome.test_outcome == TestOutcome.KILLED:
                fate = "killed"
            elif outcome.test_outcome == TestOutcome.SURVIVED:
                fate = "survived"
            else:
                fate = "error"
            mutants.append(Mutant(name, str(spec.module_path), f"{spec.module_path}:{spec.start_pos[0]}",
                                  spec.operator_name, fate, outcome.diff or ""))
        pending = sum(1 for _ in db.pending_work_items)
    return sorted(mutants, key=lambda m: (m.path, int(m.where.rsplit(":", 1)[1]), m.operator)), pending


# -- Lua scripts: the hand-written mutants -----------------------------------------------------


def lua_script_path(sandbox: Path, script: str) -> Path:
    return sandbox / "gateway" / "storage" / "lua" / f"{script}.lua"


def run_lua(table: dict[str, Any], sandbox: Path, env: dict[str, str], timeout: float, script: str,
            previous: ModuleResult | None = None, retest_survivors: bool = False) -> ModuleResult:
    """Apply each of ``script``'s mutants to the sandbox's copy, run the script's tests, put
    it back. With ``retest_survivors`` only the mutants ``previous`` did not see killed run."""
    tests = table["tests"][script]
    result = ModuleResult(f"{script}.lua", [f"gateway/storage/lua/{script}.lua"], tests)
    kept = {m.operator: m for m in previous.mutants} if retest_survivors and previous is not None else {}
    if kept and previous is not None:
        result.baseline_s = previous.baseline_s
    else:
        passed, seconds, output = run_tests(tests, sandbox, env, timeout)
        result.baseline_s = round(seconds, 1)
        if not passed:
            result.note = f"the tests fail without any mutant:\n{output}"
            return result
    path = lua_script_path(sandbox, script)
    where = f"gateway/storage/lua/{script}.lua"
    for mutant in (m for m in table["mutant"] if m["script"] == script):
        before = kept.get(mutant["id"])
        if before is not None and before.outcome == "killed":
            result.mutants.append(before)
            continue
        original = path.read_text(encoding="utf-8")
        diff = f"- {mutant['original']}\n+ {mutant['mutated']}"
        if original.count(mutant["original"]) != 1:
            result.mutants.append(Mutant(result.name, where, where, mutant["id"], "error", diff, why=mutant["why"]))
            continue
        path.write_text(original.replace(mutant["original"], mutant["mutated"]), encoding="utf-8")
        try:
            passed, seconds, _ = run_tests(tests, sandbox, env, timeout)
        finally:
            path.write_text(original, encoding="utf-8")
        result.mutants.append(Mutant(result.name, where, where, mutant["id"], "survived" if passed else "killed",
                                     diff, round(seconds, 1), why=mutant["why"]))
        print(f"mutation:   {mutant['id']}: {result.mutants[-1].outcome} ({seconds:.0f} s)", flush=True)
    return result


# -- the report --------------------------------------------------------------------------------


def mark_accepted(results: Iterable[ModuleResult], accepted: list[dict[str, str]]) -> None:
    """Give each survivor that survivors.toml explains its reason: an entry matches by path
    (``*``: any), operator (or Lua mutant id), a piece of text in the mutated line(s) and,
    when the mutated line alone is ambiguous, a piece of its context in the diff."""
    for result in results:
        for mutant in result.mutants:
            if mutant.outcome != "survived":
                continue
            added = "\n".join(line for line in mutant.diff.splitlines() if line.startswith("+"))
            for entry in accepted:
                if (entry["path"] in ("*", mutant.path) and entry["operator"] == mutant.operator
                        and entry.get("match", "") in added and entry.get("context", "") in mutant.diff):
                    mutant.accepted = entry["reason"]
                    break


def summary(results: Sequence[ModuleResult]) -> dict[str, Any]:
    killed = sum(r.count("killed") for r in results)
    survived = sum(r.count("survived") for r in results)
    return {"killed": killed, "survived": survived, "errors": sum(r.count("error") for r in results),
            "not_judged_yet": sum(r.pending for r in results),
            "score": round(killed / (killed + survived), 4) if killed + survived else None,
            "unexplained_survivors": sum(1 for r in results for m in r.mutants
                                         if m.outcome == "survived" and not m.accepted)}


def percent(score: float | None) -> str:
    return "n/a" if score is None else f"{score * 100:.1f} %"


def write_report(out: Path, python: list[ModuleResult], lua: list[ModuleResult], command: str,
                 started: datetime.datetime, finished: datetime.datetime) -> dict[str, Any]:
    overall = summary([*python, *lua])
    doc: dict[str, Any] = {
           "started": started.isoformat(timespec="seconds"), "finished": finished.isoformat(timespec="seconds"),
           "command": command, "overall": overall, "python": summary(python), "lua": summary(lua),
           "modules": [{**dataclasses.asdict(r), "score": r.score,
                        "killed": r.count("killed"), "survived": r.count("survived"), "errors": r.count("error")}
                       for r in [*python, *lua]]}
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")

    lines = [f"# Mutation testing report (written {finished:%Y-%m-%d %H:%M} UTC)", "",
             f"Last command: `{command}`, started {started:%Y-%m-%d %H:%M} UTC. Each module's row says when "
             "its mutants were last run.", "",
             f"**Overall: {overall['killed']} killed, {overall['survived']} survived "
             f"({overall['unexplained_survivors']} not explained in mutation/survivors.toml), "
             f"{overall['errors']} could not be run, {overall['not_judged_yet']} not judged yet: "
             f"score {percent(overall['score'])}** "
             f"(Python {percent(doc['python']['score'])}, Lua {percent(doc['lua']['score'])}).", "",
             "| module | files | judged | killed | survived | errors | not judged yet | score | clean test run "
             "| run at (UTC) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in [*python, *lua]:
        lines.append(f"| {r.name} | {', '.join(r.paths)} | {len(r.mutants)} | {r.count('killed')} | "
                     f"{r.count('survived')} | {r.count('error')} | {r.pending} | {percent(r.score)} | "
                     f"{r.baseline_s if r.baseline_s is not None else '-'} s | {r.ran_at[:16]} |")
    for r in [*python, *lua]:
        if r.note:
            lines += ["", f"## {r.name}: not run", "", "```", r.note.strip(), "```"]
        survivors = [m for m in r.mutants if m.outcome in ("survived", "error")]
        if not survivors:
            continue
        lines += ["", f"## {r.name}: survivors", "", f"Tests: {', '.join(r.tests)}", ""]
        for m in survivors:
            label = "could not be run" if m.outcome == "error" else (
                f"accepted: {m.accepted}" if m.accepted else "**not explained**")
            lines += [f"### {m.where} {m.operator} ({label})", ""]
            if m.why:
                lines += [f"Why it matters: {m.why}", ""]
            lines += ["```diff", m.diff.strip(), "```", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return doc


# -- the command -------------------------------------------------------------------------------


def load_toml(name: str) -> dict[str, Any]:
    with (HERE / name).open("rb") as handle:
        return tomllib.load(handle)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def save(results_dir: Path, result: ModuleResult) -> None:
    """Keep one module's result, so a later ``--only`` run refreshes it and keeps the others'."""
    result.ran_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    (results_dir / f"{slug(result.name)}.json").write_text(json.dumps(dataclasses.asdict(result), indent=1) + "\n",
                                                           encoding="utf-8")


def load_results(results_dir: Path, names: Sequence[str]) -> list[ModuleResult]:
    """The kept results of ``names``, in that order (a module never run is left out)."""
    found = []
    for name in names:
        path = results_dir / f"{slug(name)}.json"
        if path.exists():
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["mutants"] = [Mutant(**m) for m in raw["mutants"]]
            found.append(ModuleResult(**raw))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run only the modules whose name contains this (repeatable); 'lua' for the Lua "
                             "mutants, 'lua:claim' for one script's; the others keep their last results")
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "mutation")
    parser.add_argument("--list", action="store_true", help="list the modules and Lua scripts, run nothing")
    parser.add_argument("--report", action="store_true", help="only write the report from the kept results")
    parser.add_argument("--retest-survivors", action="store_true",
                        help="keep each module's killed mutants, run only its survivors (after adding tests)")
    parser.add_argument("--sandbox", default="sandbox",
                        help="the sandbox's folder name under --out (two runs at once need two)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutants judged at once, each by a cosmic-ray http worker in its own copy of the "
                             "work tree (the Lua mutants stay one at a time)")
    args = parser.parse_args(argv)

    targets, lua_table = load_toml("targets.toml"), load_toml("lua_mutants.toml")
    accepted = load_toml("survivors.toml").get("survivor", [])
    scripts = list(lua_table["tests"])
    if args.list:
        for m in targets["module"]:
            print(f"{m['name']}: {', '.join(m['paths'])} <- {', '.join(m['tests'])}")
        for script in scripts:
            count = sum(1 for m in lua_table["mutant"] if m["script"] == script)
            print(f"lua:{script}: {count} mutants <- {', '.join(lua_table['tests'][script])}")
        return 0

    modules = [m for m in targets["module"] if not args.only or any(o in m["name"] for o in args.only)]
    lua_scripts = [s for s in scripts if not args.only or "lua" in args.only or f"lua:{s}" in args.only]
    if args.report:
        modules, lua_scripts = [], []
    out = args.out.resolve()
    sandbox, sessions, results_dir = out / args.sandbox, out / "sessions", out / "results"
    sessions.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    command = "make mutate" + (f" ARGS='{' '.join(argv if argv is not None else sys.argv[1:])}'"
                               if (argv if argv is not None else sys.argv[1:]) else "")

    def report() -> dict[str, Any]:
        python = load_results(results_dir, [m["name"] for m in targets["module"]])
        known = {r.name for r in python}
        # A module whose run was stopped has a session but no result yet: report what it has.
        python += [ModuleResult(m["name"], list(m["paths"]), list(m["tests"]), note="") for m in targets["module"]
                   if m["name"] not in known and (sessions / f"{slug(m['name'])}.sqlite").exists()]
        order = [m["name"] for m in targets["module"]]
        python.sort(key=lambda r: order.index(r.name))
        for result in python:  # the session is the record of each mutant's fate
            session = sessions / f"{slug(result.name)}.sqlite"
            if session.exists() and not result.note:
                result.mutants, result.pending = read_session(result.name, session)
        lua = load_results(results_dir, [f"{s}.lua" for s in scripts])
        mark_accepted([*python, *lua], accepted)
        return write_report(out, python, lua, command, started, datetime.datetime.now(datetime.UTC))

    def kept(name: str) -> ModuleResult | None:
        found = load_results(results_dir, [name])
        return found[0] if found else None

    if modules or lua_scripts:
        make_sandbox(ROOT, sandbox)
        env = sandbox_env(sandbox)
        check_sandbox_imports(sandbox, env)
        with (out / "run.log").open("a", encoding="utf-8") as log, contextlib.ExitStack() as workers:
            urls = workers.enter_context(http_workers(ROOT, sandbox, args.jobs, log)) if (
                args.jobs > 1 and modules) else []
            for module in modules:
                print(f"mutation: {module['name']} ...", flush=True)
                save(results_dir, run_module(module, targets["options"]["exclude-operators"], sandbox, sessions,
                                             env, log, kept(module["name"]), args.retest_survivors, urls))
                report()
        for script in lua_scripts:
            print(f"mutation: {script}.lua ...", flush=True)
            save(results_dir, run_lua(lua_table, sandbox, env, float(lua_table["timeout"]), script,
                                      kept(f"{script}.lua"), args.retest_survivors))
            report()
    overall = report()["overall"]
    print(f"mutation: {overall['killed']} killed, {overall['survived']} survived "
          f"({overall['unexplained_survivors']} unexplained), score {percent(overall['score'])}; "
          f"report: {out / 'report.md'}")
    return 0
