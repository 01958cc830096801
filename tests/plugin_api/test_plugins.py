"""Plugins as third parties ship them: entry points in the ``gateway`` group, found in an
installed distribution. Good ones add sink types, event types, endpoints and commands; a
broken one is reported with its error and skipped, and never takes the CLI down."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from marshmallow import Schema, fields
from support.configs import write_config
from support.processes import child_env

from gateway import EventType, hookimpl

TOKEN = "plugins-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

GOOD_PLUGIN = '''
import click
from flask import Blueprint, jsonify
from marshmallow import Schema, fields

from gateway import EventType, hookimpl

bp = Blueprint("acme", __name__)


@bp.get("/api/acme/ping")
def ping():
    return jsonify({"pong": True})


class OrderShipped(Schema):
    order_id = fields.String(required=True)


@hookimpl
def register_event_types(register):
    register(EventType("order.shipped", "An order left the warehouse", OrderShipped, {"order_id": "A-1"}))


@hookimpl
def register_blueprints(register):
    register(bp)


@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        """Say hello from the acme plugin."""
        click.echo("hello from acme")

    @cli.command()
    def run():
        """A plugin's own `run`: must not replace the core's."""
        click.echo("hijacked")
'''

RAISING_PLUGIN = '''
from gateway import hookimpl


@hookimpl
def register_commands(cli):
    raise RuntimeError("acme-cli is misconfigured")
'''


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory on PYTHONPATH holding an installed distribution with three entry points:
    a good plugin, one whose module does not import, and one whose command hook raises."""
    site = tmp_path / "site"
    (site / "acme_plugin.py").parent.mkdir(parents=True)
    (site / "acme_plugin.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    (site / "acme_raising.py").write_text(textwrap.dedent(RAISING_PLUGIN))
    dist = site / "acme_gateway_plugins-2.3.4.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-gateway-plugins\nVersion: 2.3.4\n")
    (dist / "entry_points.txt").write_text(
        "[gateway]\nacme = acme_plugin\nacme_broken = acme_missing_module\nacme_raising = acme_raising\n")
    return site


def gateway(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=120,
                          env=child_env(PYTHONPATH=str(site)), input="", check=False)


def test_entry_point_plugins_are_listed_with_errors(site: Path) -> None:
    result = gateway(site, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["acme"]["version"] == "2.3.4"
    assert plugins["acme"]["event_types"] == ["order.shipped"]
    assert plugins["acme"]["error"] is None
    assert plugins["acme_broken"]["error"] == "ModuleNotFoundError: No module named 'acme_missing_module'"
    table = gateway(site, "plugins").stdout
    assert "acme_broken failed to load: ModuleNotFoundError" in table


def test_plugin_commands_and_a_broken_plugin_do_not_break_the_cli(site: Path) -> None:
    hello = gateway(site, "hello")
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello from acme\n"
    assert "plugin acme_raising could not add its commands: RuntimeError: acme-cli is misconfigured" in hello.stderr
    top = gateway(site, "--help")
    assert top.returncode == 0
    assert "hello" in top.stdout and "Say hello from the acme plugin." in top.stdout
    assert "Run everything" in top.stdout and "hijacked" not in top.stdout  # the core's `run` stays
    assert "plugin acme tried to add a command 'run' that already exists; ignored" in hello.stderr
    # Core commands never load plugins at all.
    assert gateway(site, "sign", "--secret", "s", "-").stderr == ""


def test_plugin_event_types_join_the_catalogue(site: Path) -> None:
    events = {e["name"]: e for e in json.loads(gateway(site, "events", "--json").stdout)}
    assert events["order.shipped"]["plugin"] == "acme"
    assert events["order.shipped"]["sample"] == {"order_id": "A-1"}


def test_config_naming_a_broken_plugins_sink_type_fails_naming_it(site: Path, tmp_path: Path) -> None:
    path = write_config(tmp_path / "gateway.toml", {"sinks": [
        {"name": "erp", "type": "acme_erp", "url": "https://erp.example.com/", "events": ["order.shipped"]}]})
    result = gateway(site, "config", "check", str(path))
    assert result.returncode == 2
    message = result.stderr.splitlines()[1]
    assert message.startswith("sinks[0].type: Unknown sink type 'acme_erp'")
    assert "acme_broken (ModuleNotFoundError: No module named 'acme_missing_module')" in message


# -- GET /api/plugins and plugin-added endpoints, in-process -------------------------------------------

class Shipped(Schema):
    order_id = fields.String(required=True)


class ShippingPlugin:
    __name__ = "shipping"

    @hookimpl
    def register_event_types(self, register: Any) -> None:
        register(EventType("order.shipped", "An order left the warehouse", Shipped, {"order_id": "A-1"}))


def test_api_plugins_requires_the_admin_token(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}})
    assert client.get("/api/plugins").status_code == 401
    assert client.get("/api/plugins", headers={"Authorization": "Bearer wrong-one"}).status_code == 403


def test_api_plugins_lists_versions_types_and_errors(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}}, plugins=[ShippingPlugin()])
    plugins = {p["name"]: p for p in client.get("/api/plugins", headers=AUTH).get_json()["plugins"]}
    from gateway import __version__

    builtin = plugins["gateway.publish.builtin_events"]
    assert builtin["version"] == __version__ and builtin["builtin"] is True and builtin["error"] is None
    assert plugins["shipping"]["event_types"] == ["order.shipped"]
    assert len(plugins["gateway.publish.builtin_events"]["event_types"]) == 16  # the guide's ten, six system events
    assert plugins["generic_webhook"]["sink_types"] == ["generic_webhook"]
    assert all(set(p) == {"name", "version", "builtin", "error", "sink_types", "event_types"}
               for p in plugins.values())


def test_plugin_events_can_be_published_and_are_catalogued(make_client: Any, redis_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}}, plugins=[ShippingPlugin()])
    names = [t["name"] for t in client.get("/api/event-types").get_json()["event_types"]]
    assert "order.shipped" in names
    ok = client.post("/api/events", json={"event": "order.shipped", "data": {"order_id": "A-7"}}, headers=AUTH)
    assert ok.status_code == 202
    bad = client.post("/api/events", json={"event": "order.shipped", "data": {}}, headers=AUTH)
    assert bad.status_code == 422
    assert bad.get_json()["fields"] == {"data.order_id": ["Missing data for required field."]}
