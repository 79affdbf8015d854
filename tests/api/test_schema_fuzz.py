"""Schemathesis against the app's own OpenAPI schema: no 5xx, and every answer matches the schema.

Seeded and bounded (a few examples an operation) so it stays quick in `make test`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry
from locallab.config.settings import Settings
from locallab.engines.fake import FakeEngine
from tests.conftest import wait_until_ready

# No 5xx, the status documented, and a body that matches it. Not "every schema-valid request is
# accepted": some rules (a JSON schema inside `format`, a context length) are beyond OpenAPI's reach.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import catalog as catalog_fixture

    catalog: dict[str, CatalogEntry] = catalog_fixture.__wrapped__(tmp_path_factory.mktemp("c"))  # type: ignore[attr-defined]
    engine = FakeEngine([b"ok"] * 3, parallel=64, max_queue=64)
    app = create_app(
        Settings(
            model="fake-chat",
            rate_limit_per_minute=0,
            allowed_hosts="*",
            data_dir=tmp_path_factory.mktemp("data"),
        ),
        engine_loader=lambda path: engine,
        catalog=catalog,
    )
    with TestClient(app, base_url="http://localhost") as client:  # runs the lifespan: services exist
        wait_until_ready(client)
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_answers_match_the_schema(fuzz_schema: Any) -> None:
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) >= 12  # every operation of the API

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        call()
