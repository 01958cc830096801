"""A config-file sink whose destination the SSRF guard will refuse: the sinks API and the
console say so (``warnings``) instead of "ok" and a failed delivery later."""

from __future__ import annotations

import html
import re
from typing import Any

TOKEN = "sink-warnings-admin-token-0123456789abc"


def test_a_loopback_file_sink_carries_a_warning_in_the_api_and_on_its_card(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}, "sinks": [
        {"name": "crm", "type": "generic_webhook", "url": "http://127.0.0.1:9101/hooks", "events": ["*"]},
        {"name": "public", "type": "generic_webhook", "url": "http://93.184.216.34/hooks", "events": ["*"]}]})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    listed = {s["name"]: s for s in client.get("/api/sinks", headers=auth).json["sinks"]}
    [warning] = listed["crm"]["warnings"]
    assert warning.startswith("url: Deliveries there would be refused: 127.0.0.1 is a loopback address")
    assert listed["public"]["warnings"] == []
    assert client.get("/api/sinks/crm", headers=auth).json["sink"]["warnings"] == [warning]

    form = {"token": TOKEN, "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"',
                                                    client.get("/admin/signin").text).group(1)}
    client.post("/admin/signin", data=form)
    card = client.get("/admin/integrations").text
    assert "Deliveries to it will fail:" in card and html.escape(warning, quote=False) in card


def test_no_warning_when_private_networks_are_allowed(make_client: Any) -> None:
    client = make_client({"gateway": {"admin_token": TOKEN}, "delivery": {"allow_private_networks": True}, "sinks": [
        {"name": "crm", "type": "generic_webhook", "url": "http://127.0.0.1:9101/hooks", "events": ["*"]}]})
    listed = client.get("/api/sinks", headers={"Authorization": f"Bearer {TOKEN}"}).json["sinks"]
    assert listed[0]["warnings"] == []
