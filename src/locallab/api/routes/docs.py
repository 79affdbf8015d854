"""OpenAPI `responses` entries shared by the routes: every error has the `{"detail"}` body."""

from __future__ import annotations

from typing import Any

from locallab.api.schemas.responses import ErrorResponse

_DESCRIPTIONS = {
    400: "Bad request: invalid JSON, or a missing, mistyped, unknown or out-of-range field",
    404: "Unknown model or model file",
    409: "The model exists but is not loaded",
    429: "Rate limit exceeded (see the Retry-After header)",
    500: "Engine failure",
    503: "No model is loaded yet, or the request queue is full (see the Retry-After header)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    codes = sorted({400, 429, 500, *statuses})
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


def sse_ok(model: type | None, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is JSON (`model`, or any object) or, with stream=true, server-sent events."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    if model is not None:
        response["model"] = model
    else:
        response["content"]["application/json"] = {"schema": {"type": "object"}}
    return {200: response}
