"""OpenAPI entries of the /api routes: errors are Ollama's `{"error"}`, streams are NDJSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from locallab.api.ndjson import MEDIA_TYPE


class OllamaErrorResponse(BaseModel):
    error: str
    request_id: str | None = None


_DESCRIPTIONS = {
    400: "Bad request: a missing, mistyped, unknown or unsupported field",
    404: "model 'x' not found",
    429: "Rate limit exceeded (see the Retry-After header)",
    500: "Engine failure",
    502: "The Hugging Face Hub failed or sent a corrupt file",
    503: "The request queue is full (see the Retry-After header)",
    507: "Not enough memory or disk for the model",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    codes = sorted({400, 429, 500, *statuses})
    return {code: {"model": OllamaErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


def ndjson_ok(description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is NDJSON (the default), or one JSON object with stream false."""
    obj = {"schema": {"type": "object"}}
    return {200: {"description": description, "content": {MEDIA_TYPE: obj, "application/json": obj}}}
