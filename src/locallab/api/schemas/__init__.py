"""Request and response bodies of the HTTP API (pydantic models; they also make the OpenAPI schema)."""
