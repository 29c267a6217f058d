"""The OpenAPI document against the app: the same paths and methods, valid schemas, and schemathesis
fuzzing every operation from the document (no 5xx, every answer as documented); credentials on every
endpoint but health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from kurative.ingress.api import ApiHooks, PlaybooksView, openapi_document
from kurative.ingress.app import IngressHooks, create_app
from kurative.ingress.settings import IngressSettings
from kurative.journal import Journal
from kurative.metrics import Metrics
from tests.integration.api.conftest import Served

pytestmark = pytest.mark.timeout(120)

METHODS = {"get", "post", "put", "patch", "delete"}
UNAUTHENTICATED = {("/healthz", "GET"), ("/readyz", "GET"), ("/metrics", "GET")}
EXAMPLES = 25
"""Examples per operation: 14 operations, well under a minute on two busy cores."""


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in METHODS
    }


async def _nothing() -> tuple[str, ...]:
    return ()


async def _ready() -> list[str]:
    return []


def test_the_document_names_every_route_and_nothing_else() -> None:
    async def reload() -> PlaybooksView:
        raise AssertionError("not called")

    api = ApiHooks(
        journal=cast(Journal, object()),
        playbooks=lambda: PlaybooksView("", datetime.now(UTC)),
        reload=reload,
    )
    hooks = IngressHooks(commit=lambda r: _nothing(), readiness=_ready, api=api, metrics=Metrics())
    app = create_app(IngressSettings(), hooks)
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served == documented()


def test_the_document_is_openapi_3_1_with_valid_schemas() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    for name, schema in document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:
            raise AssertionError(f"components.schemas.{name}: {exc}") from None
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["operationId"], (path, method)
            assert "200" in operation["responses"], (path, method)
            secured = operation.get("security", document["security"])
            assert bool(secured) == ((path, method.upper()) not in UNAUTHENTICATED), (path, method)
            if secured:
                assert "401" in operation["responses"], (path, method)


def test_every_endpoint_but_health_needs_credentials(served: Served) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for path, method in sorted(documented()):
            concrete = path.replace("{id}", "some-id")
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWxpY2U6eA=="}):
                answer = client.request(method, concrete, headers=headers)
                if (path, method) in UNAUTHENTICATED:
                    assert answer.status_code in (200, 503), (method, path)
                    continue
                assert answer.status_code == 401, (method, path, headers, answer.text)
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["status"] == 401
        assert client.get("/api/v1/openapi.json", headers=served.headers()).json() == openapi_document()


schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_fuzzed_from_its_document(case: Any, served: Served) -> None:
    case.call_and_validate(base_url=served.url, headers=served.headers("bob"), checks=CHECKS, timeout=30)
