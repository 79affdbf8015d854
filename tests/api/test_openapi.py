"""The OpenAPI schema shows the API as it is: 400 instead of 422, every error with a `{"detail"}` body."""

from __future__ import annotations

from tests.conftest import AppFactory


def test_schema_has_no_422_and_documents_errors_on_every_route(make_client: AppFactory) -> None:
    schema = make_client().get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert {(p, m) for p, m, _ in operations} >= {
        ("/generate", "post"),
        ("/generate/batch", "post"),
        ("/chat", "post"),
        ("/models/load", "post"),
        ("/models/current", "get"),
        ("/models/available", "get"),
        ("/system/info", "get"),
        ("/health", "get"),
        ("/health/ready", "get"),
    }
    for path, method, op in operations:
        responses = op["responses"]
        assert "422" not in responses, (path, method)
        assert "500" in responses, (path, method)
        if path not in ("/health", "/health/ready"):  # probes: no body, no rate limit
            assert {"400", "429"} <= set(responses), (path, method)
        for status, response in responses.items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                expected = (
                    "/OpenAIErrorResponse"
                    if path.startswith("/v1/")
                    else "/OllamaErrorResponse"
                    if path.startswith("/api/")
                    else "/ErrorResponse"
                )
                if path.startswith("/v1/messages"):
                    expected = "/AnthropicErrorResponse"
                assert ref.endswith(expected), (path, method, status)


def test_generation_routes_document_their_stream_and_model_errors(make_client: AppFactory) -> None:
    schema = make_client().get("/openapi.json").json()
    for path in ("/generate", "/chat"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"404", "503"} <= set(responses)
        assert "text/event-stream" in responses["200"]["content"]
