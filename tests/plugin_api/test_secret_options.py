"""Secret options are declared (``SinkType(secret_options=...)``), never guessed, and never
shown: not in ``/api/sinks``, ``gateway sinks``, the console, the logs or the delivery log,
where a secret URL shows its host and no path. End to end, with the Slack sink (its ``url``
is declared secret) posting to a local server through the real engine."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from click.testing import CliRunner
from support.configs import write_config

from gateway.cli import cli

TOKEN = "secret-options-admin-token-0123456"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WEBHOOK_PATH = "/services/T0SECRET/B0SECRET/xoxWebhookToken1234567890"
TICKET = {"event": "ticket.create", "data": {"subject": "Help", "message": "Please", "customer_email": "a@example.com"}}


@pytest.fixture
def config(recording_sink: Any, redis_url: str, tmp_path: Any) -> dict[str, Any]:
    return {"gateway": {"admin_token": TOKEN, "redis_url": redis_url, "data_dir": str(tmp_path / "data")},
            "delivery": {"allow_private_networks": True},
            "sinks": [{"name": "support-channel", "type": "slack", "url": recording_sink.base_url + WEBHOOK_PATH,
                       "events": ["ticket.created"]}]}


@pytest.fixture
def client(make_client: Any, config: dict[str, Any]) -> Any:
    return make_client(config)


def assert_hidden(text: str) -> None:
    assert "T0SECRET" not in text and "xoxWebhookToken" not in text and "services" not in text, text


def test_a_secret_url_is_never_shown(client: Any, recording_sink: Any, drain_deliveries: Any, config: Any,
                                     tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    host = recording_sink.base_url
    with caplog.at_level(logging.DEBUG):
        assert client.post("/api/webhooks/receive", json=TICKET).status_code == 201
        [attempt] = drain_deliveries(client.application)
    assert attempt["outcome"] == "delivered"
    assert recording_sink.requests[0].path == WEBHOOK_PATH  # the real URL was used ...

    # ... and shown nowhere: the delivery log (the attempt's request URL included) ...
    assert attempt["request"]["url"] == f"{host}/…"
    listed = client.get("/api/deliveries?sink=support-channel", headers=AUTH)
    [delivery] = listed.get_json()["deliveries"]
    assert delivery["target"]["url"] == f"{host}/…"
    detail = client.get(f"/api/deliveries/{delivery['id']}", headers=AUTH)
    assert detail.get_json()["delivery"]["attempt_log"][0]["request"]["url"] == f"{host}/…"
    for response in (listed, detail):
        assert_hidden(response.get_data(as_text=True))

    # ... the sinks API ...
    sinks = client.get("/api/sinks", headers=AUTH)
    assert sinks.get_json()["sinks"][0]["options"]["url"] == f"{host}/…"
    assert_hidden(sinks.get_data(as_text=True))

    # ... the logs ...
    assert_hidden("\n".join(record.getMessage() for record in caplog.records))

    # ... the console ...
    token_form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/signin").text)
    assert token_form is not None
    client.post("/admin/signin", data={"token": TOKEN, "csrf_token": token_form.group(1)})
    for page in ("/admin/integrations", f"/admin/deliveries/{delivery['id']}"):
        shown = client.get(page)
        assert shown.status_code == 200, page
        assert_hidden(shown.get_data(as_text=True))

    # ... and the CLI.
    path = write_config(tmp_path / "gateway.toml", config)
    for argv in (["sinks", "--json"], ["deliveries", "--sink", "support-channel", "--json"],
                 ["delivery", "show", delivery["id"], "--json"]):
        result = CliRunner().invoke(cli, [*argv, "--config", str(path)])
        assert result.exit_code == 0, (argv, result.output)
        assert_hidden(result.output)
        assert host in result.output or "…" in result.output


def test_an_undeclared_url_keeps_its_first_path_segment(make_client: Any, recording_sink: Any,
                                                        drain_deliveries: Any) -> None:
    # A generic webhook's url is not declared secret: its first segment helps tell sinks apart.
    client = make_client({"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True},
                          "sinks": [{"name": "crm", "type": "generic_webhook", "events": ["*"],
                                     "url": recording_sink.base_url + "/hooks/support/abc123"}]})
    client.post("/api/webhooks/receive", json=TICKET)
    [attempt] = drain_deliveries(client.application)

    assert attempt["request"]["url"] == f"{recording_sink.base_url}/hooks/…"
    sink = client.get("/api/sinks", headers=AUTH).get_json()["sinks"][0]
    assert sink["options"]["url"] == f"{recording_sink.base_url}/hooks/…"
    assert json.dumps(sink).count("abc123") == 0
