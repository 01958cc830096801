"""`gateway new-plugin`: a scaffolded plugin installs, shows up and delivers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.cli.scaffold import PluginNames

BIN = Path(sys.executable).parent
TIMEOUT_S = 300


def run(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAY_", "PROMETHEUS_", "PYTEST_")) and k != "REDIS_URL"}
    env.update(extra)
    return env


def test_names_derived_from_the_plugin_name():
    names = PluginNames.from_name("Acme-CRM")
    assert (names.type_name, names.package, names.dist_name, names.class_prefix) == (
        "acme_crm", "gateway_acme_crm", "gateway-acme-crm", "AcmeCrm")
    assert PluginNames.from_name("gateway-helpdesk").type_name == "helpdesk"


@pytest.mark.parametrize("bad", ["1abc", "acme crm", "acme--crm", "Ünicode", "x" * 41, "a/b", ""])
def test_unusable_names_are_refused_with_an_explanation(tmp_path, bad):
    result = CliRunner().invoke(cli, ["new-plugin", bad, "--directory", str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "is not a usable plugin name" in result.output and "e.g. acme-crm" in result.output
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")

    result = CliRunner().invoke(cli, ["new-plugin", "acme", "--directory", str(tmp_path / "taken")])

    assert result.exit_code == 1 and "already exists" in result.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.fixture
def installed_plugin(tmp_path: Path):
    """A freshly scaffolded plugin, pip-installed into this venv; uninstalled afterwards."""
    name = f"probe{uuid.uuid4().hex[:8]}"
    names = PluginNames.from_name(name)
    target = tmp_path / names.dist_name
    created = run(str(BIN / "gateway"), "new-plugin", name, "--directory", str(target), cwd=tmp_path,
                  env=clean_env())
    assert created.returncode == 0, created.stderr
    assert (target / "setup.cfg").exists() and (target / names.package / "__init__.py").exists()
    install = run(sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q",
                  str(target), cwd=tmp_path)
    assert install.returncode == 0, install.stdout + install.stderr
    try:
        yield names, target
    finally:
        run(sys.executable, "-m", "pip", "uninstall", "-y", "-q", names.dist_name, cwd=tmp_path)


def test_scaffolded_plugin_installs_lists_passes_its_tests_and_delivers(installed_plugin, tmp_path, redis_url,
                                                                        redis_client, recording_sink):
    names, target = installed_plugin

    listed = run(str(BIN / "gateway"), "plugins", "--json", cwd=tmp_path, env=clean_env())
    assert listed.returncode == 0, listed.stderr
    plugin = next(p for p in json.loads(listed.stdout) if p["name"] == names.type_name)
    assert (plugin["version"], plugin["sink_types"], plugin["error"]) == ("0.1.0", [names.type_name], None)

    # Its own tests, as generated, pass against the installed gateway (their own embedded Redis).
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=target, env=clean_env())
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "4 passed" in tests.stdout

    # And it delivers through the real CLI and a real worker process.
    config = tmp_path / "gateway.toml"
    config.write_text(f"""
[gateway]
redis_url = "{redis_url}"
data_dir = "{tmp_path / 'data'}"

[delivery]
allow_private_networks = true

[[sinks]]
name = "probe"
type = "{names.type_name}"
url = "{recording_sink.url}"
secret = "probe-secret"
events = ["ticket.created"]
""")
    env = clean_env(GATEWAY_CONFIG=str(config))
    sent = run(str(BIN / "gateway"), "send-test", "ticket.created", "--sink", "probe", "--json", cwd=tmp_path,
               env=env)
    assert sent.returncode == 0, sent.stderr
    (delivery_id,) = json.loads(sent.stdout)["delivery_ids"]
    worker = run(str(BIN / "gateway"), "worker", "--burst", cwd=tmp_path, env=env)
    assert worker.returncode == 0, worker.stderr[-3000:]

    (request,) = recording_sink.wait_for(1)
    assert request.json()["event"] == "ticket.created"
    assert request.header("User-Agent") == f"{names.dist_name}/0.1.0"
    assert request.header("webhook-id") == delivery_id and request.header("X-Webhook-Signature")
