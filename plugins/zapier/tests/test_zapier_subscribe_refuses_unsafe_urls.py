"""Subscribing refuses a target URL the gateway would refuse to deliver to (the SSRF
policy, through the plugin API's ``check_destination``): 422 ``validation_failed`` on the
field the Zap sent, with the reason, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest

KEY = "zk_" + "s" * 29


def config(allow_private_networks: bool = False) -> dict[str, Any]:
    return {"delivery": {"allow_private_networks": allow_private_networks},
            "sinks": [{"name": "zapier", "type": "zapier", "events": ["ticket.created"], "api_keys": [KEY]}]}


def subscribe(client: Any, **body: Any) -> Any:
    return client.post("/api/zapier/hooks", json={"event": "ticket.created", **body}, headers={"X-API-Key": KEY})


@pytest.mark.parametrize(("url", "reason"), [
    ("http://127.0.0.1:6379/", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://10.0.0.7/internal", "10.0.0.7 is a private address"),
    ("http://[::1]/", "::1 is a loopback address"),
    ("http://localhost:8080/admin", "localhost resolves to"),
])
def test_a_target_url_the_guard_would_refuse_is_a_422_on_target_url(make_client: Any, url: str, reason: str) -> None:
    client = make_client(config())

    response = subscribe(client, target_url=url)

    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_failed"
    [message] = body["fields"]["target_url"]
    assert reason in message and "delivery.allow_private_networks" in message
    assert client.get("/api/zapier/hooks", headers={"X-API-Key": KEY}).get_json()["hooks"] == []


def test_zapiers_hookurl_is_checked_and_named_as_sent(make_client: Any) -> None:
    response = subscribe(make_client(config()), hookUrl="http://127.0.0.1/hooks/1")

    assert response.status_code == 422
    assert list(response.get_json()["fields"]) == ["hookUrl"]


@pytest.mark.parametrize("url", ["https://hooks.zapier.com/hooks/standard/1/abc/", "https://8.8.8.8/hooks/1"])
def test_public_targets_are_accepted(make_client: Any, url: str) -> None:
    # hooks.zapier.com may not resolve on a test machine without DNS: accepted then too, and
    # the guard still judges the address at every delivery.
    assert subscribe(make_client(config()), target_url=url).status_code == 201


def test_allow_private_networks_accepts_local_targets(make_client: Any) -> None:
    response = subscribe(make_client(config(allow_private_networks=True)), target_url="http://127.0.0.1:9/hook")

    assert response.status_code == 201
