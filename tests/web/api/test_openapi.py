"""GET /api/openapi.json: a valid document of every endpoint, and an API that keeps to it."""

from __future__ import annotations

import pytest
import schemathesis
from flask import Blueprint, jsonify
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway import hookimpl
from gateway.web.api.openapi import UNDOCUMENTED_PREFIXES, openapi_path

ADMIN_TOKEN = "openapi-admin-token-0123456789ab"
ZAPIER_KEY = "openapi-zapier-key"
EXAMPLES = 25
# No 5xx, and no answer the document does not describe. (Not "positive data accepted": a
# schema-valid value can still be refused with a documented 4xx, e.g. an unknown sink name.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
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


def test_admin_operations_document_the_throttles_429(document):
    admin = document["paths"]["/api/plugins"]["get"]["responses"]
    assert admin["429"] == {"$ref": "#/components/responses/TooManyAttempts"}
    assert "Retry-After" in document["components"]["responses"]["TooManyAttempts"]["headers"]
    # Every credential is throttled (issue 13): receive signatures and Zapier keys too;
    # what takes no credential has no 429.
    assert "429" in document["paths"]["/api/webhooks/receive"]["post"]["responses"]
    assert "429" in document["paths"]["/api/zapier/hooks"]["post"]["responses"]
    assert "429" not in document["paths"]["/healthz"]["get"]["responses"]


def test_path_parameters_come_from_the_url_rules(document):
    operation = document["paths"]["/api/deliveries/{delivery_id}"]["get"]
    assert {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}} in (
        operation["parameters"])


def test_every_operation_is_described(document):
    undescribed = [f"{method.upper()} {path}" for path, item in document["paths"].items()
                   for method, operation in item.items()
                   if "Not described yet" in operation.get("description", "")]
    assert undescribed == []


def test_the_api_keeps_to_its_document(app):
    """schemathesis generates requests for every operation: no 5xx, and every answer
    (status, content type, headers, body) as the document says."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers=HEADERS, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 15
    assert failures == [], "\n\n".join(failures)


def test_answers_about_real_resources_keep_to_the_document(app, client, recording_sink, drain_deliveries):
    """The generated ids above mostly meet 404s; here the same checks run on a real ticket,
    its delivery (with attempts), a replay and a Zapier subscription."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    ticket = client.post("/api/webhooks/receive", json={"event": "ticket.create", "data": {
        "subject": "Printer", "message": "On fire", "customer_email": "a@example.com"}}).get_json()["ticket"]
    recording_sink.reply(500)
    attempts = drain_deliveries(app)
    delivery_id = next(a["delivery_id"] for a in attempts if a["sink"] == "crm")

    def check(label: str, **case_args):
        case = schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]].Case(**case_args)
        return case.call_and_validate(headers=HEADERS, checks=CHECKS)

    by_id = {"ticket_id": ticket["id"]}
    assert check("GET /api/tickets/{ticket_id}", path_parameters=by_id).status_code == 200
    assert check("PATCH /api/tickets/{ticket_id}", path_parameters=by_id, body={"status": "resolved"},
                 media_type="application/json").status_code == 200
    by_id = {"delivery_id": delivery_id}
    shown = check("GET /api/deliveries/{delivery_id}", path_parameters=by_id)
    assert shown.status_code == 200 and shown.json()["delivery"]["attempt_log"]
    replayed = check("POST /api/deliveries/{delivery_id}/replay", path_parameters=by_id)
    assert replayed.status_code == 202
    zap = {"target_url": "https://hooks.zapier.com/hooks/standard/1/abc", "event": "ticket.created"}
    subscribed = check("POST /api/zapier/hooks", media_type="application/json", body=zap)
    assert subscribed.status_code == 201
    deleted = check("DELETE /api/zapier/hooks/{sub_id}", path_parameters={"sub_id": subscribed.json()["id"]})
    assert deleted.status_code == 204


class AcmePlugin:
    """A third-party plugin adding two endpoints: one described, one not."""

    @hookimpl
    def register_blueprints(self, register):
        bp = Blueprint("acme", __name__)

        @bp.get("/api/acme/status/<int:account>")
        def acme_status(account):
            """The Acme account.
            ---
            get:
              summary: Acme account status
              responses:
                200:
                  description: The account.
                  content:
                    application/json:
                      schema: {type: object, properties: {account: {type: integer}}}
            """
            return jsonify({"account": account})

        @bp.post("/api/acme/ping")
        def acme_ping():
            """Ping Acme."""
            return jsonify({"ok": True})

        register(bp)


def test_a_plugins_endpoints_are_in_the_document(make_client):
    client = make_client({}, plugins=[AcmePlugin()])

    paths = client.get("/api/openapi.json").get_json()["paths"]

    status = paths["/api/acme/status/{account}"]["get"]
    assert status["summary"] == "Acme account status"
    assert {"name": "account", "in": "path", "required": True, "schema": {"type": "integer"}} in (
        status["parameters"])
    ping = paths["/api/acme/ping"]["post"]
    assert ping["summary"] == "Ping Acme." and "Not described yet" in ping["description"]


class BrokenDocsPlugin:
    """A plugin whose docstrings are wrong: the document must still be served."""

    @hookimpl
    def register_blueprints(self, register):
        bp = Blueprint("broken_docs", __name__)

        @bp.get("/api/broken/yaml")
        def broken_yaml():
            """Bad YAML.
            ---
            get: [unclosed
            """
            return jsonify({})

        @bp.get("/api/broken/schema")
        def broken_schema():
            """A schema that does not exist.
            ---
            get:
              responses:
                200:
                  description: x
                  content: {application/json: {schema: NoSuchSchemaAnywhere}}
            """
            return jsonify({})

        @bp.get("/api/broken/parameter")
        def broken_parameter():
            """A parameter without its location.
            ---
            get:
              parameters: [{name: q}]
              responses: {200: {description: x}}
            """
            return jsonify({})

        register(bp)


def test_broken_plugin_docs_never_break_the_document(make_client):
    client = make_client({}, plugins=[BrokenDocsPlugin()])

    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    paths = response.get_json()["paths"]
    assert "cannot be read" in paths["/api/broken/yaml"]["get"]["description"]
    assert "does not exist" in paths["/api/broken/schema"]["get"]["description"]
    assert "invalid" in paths["/api/broken/parameter"]["get"]["description"]
    assert "/api/webhooks/receive" in paths
