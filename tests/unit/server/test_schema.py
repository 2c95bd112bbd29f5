"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): no 5xx, responses as documented."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from lookalike.api import Index
from lookalike.server import create_app

pytestmark = pytest.mark.slow  # hundreds of generated requests

EXAMPLES = 25  # per operation: bounded, so the suite stays quick


@pytest.fixture(scope="module")
def schema(photo_dir, tmp_path_factory):
    idx = Index.open(tmp_path_factory.mktemp("schema-index"), create=True)
    idx.index(photo_dir)
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(idx))
    idx.close()


def test_every_operation_conforms_to_the_schema(schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/query", "/api/duplicates", "/api/images/{image_id}"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case):
            # bytes that fit the schema's "binary" but are no image are rightly refused (400)
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        conforms()


def test_uploads_are_declared_as_multipart_bodies(tmp_path):
    with Index.open(tmp_path / "ix", create=True) as idx:
        paths = create_app(idx).openapi()["paths"]
    for route in ("/api/query", "/api/duplicates"):
        content = paths[route]["post"]["requestBody"]["content"]
        assert list(content) == ["multipart/form-data"], (route, list(content))
