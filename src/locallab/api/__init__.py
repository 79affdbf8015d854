"""The HTTP API: routes, request/response schemas, error mapping, SSE and middleware."""
