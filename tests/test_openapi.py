"""The API's OpenAPI document against the code: every API route is documented and
every documented path is a route; then schemathesis generates requests for every
public endpoint from the document and checks the answers (no 5xx, documented status
codes and content types, bodies that match the schemas)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from integrations.openapi import document


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                found.add((method.lower(), path))
    return found


def test_every_api_route_is_documented_and_every_documented_path_is_a_route(app):
    with app.test_request_context():
        documented = {
            (method, path) for path, item in document()["paths"].items() for method in item
        }
    assert _routes(app) == documented


def test_the_document_is_served_and_the_reference_page_renders_it(client):
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200 and served.get_json()["openapi"] == "3.1.0"
    page = client.get("/api").get_data(as_text=True)
    assert "GET /api/v1/campaigns/{slug}/supporters" in page
    assert "<script" not in page.split("<main", 1)[1]  # the reference is plain HTML


@pytest.fixture
def api_schema(make_app):
    app = make_app(API_RATE_LIMIT="1000000 per minute")
    result = app.test_cli_runner().invoke(args=["demo", "load"])
    assert result.exit_code == 0, result.output
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def test_every_public_endpoint_answers_as_documented(api_schema):
    """Schemathesis' own generation and default checks, endpoint by endpoint (its
    pytest plugin is not used: it reaches into pytest internals that pytest 9 moved).

    All its default checks but one: `positive_data_acceptance` expects every
    schema-valid request to succeed, and JSON Schema cannot say which strings are
    cursors this API gave, nor that `end` may not be below `start`, an `index` not
    above the tree's size, or a cursor not combined with sort=backers; those get a
    documented 400 with a problem+json detail, which the other checks verify."""
    operations = [
        operation
        for operation in (result.ok() for result in api_schema.get_all_operations())
        if not operation.path.startswith("/api/v1/organizer/")  # tokens: tested on their own
    ]
    labels = {o.label for o in operations}
    # Schemathesis leaves out the document's own address.
    expected = {
        f"GET {p}" for p in document_paths(api_schema) if not p.startswith("/api/v1/organizer/")
    } - {"GET /api/v1/openapi.json"}
    assert labels == expected, labels
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def answers_as_documented(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        answers_as_documented()


def document_paths(api_schema) -> list[str]:
    return list(api_schema.raw_schema["paths"])
