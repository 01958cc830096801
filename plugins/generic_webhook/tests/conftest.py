"""Fixtures of the generic webhook's end-to-end tests."""

from __future__ import annotations

from typing import Any

import pytest

ADMIN = "generic-webhook-admin-token-0123456789"


@pytest.fixture
def gateway(make_client, gateway_worker) -> Any:
    """``gateway(url, **sink)``: the web app in-process, on a generic_webhook sink ``crm`` for
    ticket.created at ``url`` (with ``sink``'s options), admin token :data:`ADMIN`; returns
    ``(client, burst)``, where ``burst()`` runs a real worker process until nothing is left."""

    def start(url: str, **sink: Any) -> Any:
        config = {"gateway": {"admin_token": ADMIN},
                  "delivery": {"allow_private_networks": True, "retry_jitter": 0},
                  "sinks": [{"name": "crm", "type": "generic_webhook", "url": url, "events": ["ticket.created"],
                             **sink}]}
        client = make_client(config)

        def burst() -> None:
            worker = gateway_worker(config, "--burst")
            assert worker.wait() == 0, worker.output()

        return client, burst

    return start
