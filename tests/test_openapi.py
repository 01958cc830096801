"""GET /api/openapi.json: a valid document of every endpoint, and an API that keeps to it."""

from __future__ import annotations

import pytest
import schemathesis

from gateway.api.openapi import UNDOCUMENTED_PREFIXES, openapi_path

ADMIN_TOKEN = "openapi-admin-token"
ZAPIER_KEY = "openapi-zapier-key"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-API-Key": ZAPIER_KEY}


@pytest.fixture
def gateway_config(recording_sink):
    return {"gateway": {"admin_token": ADMIN_TOKEN},
            "delivery": {"allow_private_networks": True},
            "sinks": [recording_sink.sink("crm", type="generic_webhook", events=["*"]),
                      {"name": "zaps", "type": "zapier", "events": ["*"], "api_keys": [ZAPIER_KEY]}]}


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def test_the_document_is_valid_openapi(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    schema.validate()  # raises on anything the OpenAPI 3.0 meta-schema rejects
    assert schema.raw_schema["openapi"].startswith("3.0")


def test_every_endpoint_is_in_the_document_plugins_included(app, document):
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        if any(rule.rule == p or rule.rule.startswith(p + "/") for p in UNDOCUMENTED_PREFIXES):
            continue
        path, _ = openapi_path(rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routed.add((path, method.lower()))
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method != "parameters"}
    assert routed - documented == set()
    # The Zapier plugin's REST Hooks endpoints come from a plugin's blueprint.
    assert ("/api/zapier/hooks", "post") in documented
    assert ("/api/webhooks/receive", "post") in documented


def test_path_parameters_come_from_the_url_rules(document):
    operation = document["paths"]["/api/deliveries/{delivery_id}"]["get"]
    assert {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}} in (
        operation["parameters"])
