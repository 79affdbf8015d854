"""What every dialect's routes document about errors: the error bodies (the seed API's `{"detail"}`,
OpenAI's and Anthropic's envelopes) and the OpenAPI `responses` entries that name them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    detail: str = Field(..., description="What went wrong and what to do about it.")
    request_id: str = Field(..., description="The X-Request-ID of the request, also in the server log.")


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    request_id: str


class OpenAIErrorResponse(BaseModel):
    """Errors on /v1, in OpenAI's envelope."""

    error: OpenAIError


class AnthropicError(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    """Errors under /v1/messages, in Anthropic's envelope."""

    type: Literal["error"]
    error: AnthropicError
    request_id: str


_DESCRIPTIONS = {
    400: "Bad request: invalid JSON, or a missing, mistyped, unknown or out-of-range field",
    401: "Missing or invalid API key (when API keys are configured)",
    404: "Unknown model or model file",
    409: "The model is not loaded",
    429: "Rate limit exceeded (see the Retry-After header)",
    500: "Engine failure",
    502: "The Hugging Face Hub (or an upstream server) failed or sent a corrupt file",
    503: "No model is loaded yet, or the request queue is full (see the Retry-After header)",
    507: "Not enough memory or disk for the model (the detail has the numbers)",
}


def errors(*statuses: int, openai: bool = False, anthropic: bool = False) -> dict[int | str, dict[str, Any]]:
    """Error responses a route documents; `openai=True` for /v1 routes, which use OpenAI's envelope,
    `anthropic=True` for /v1/messages, which uses Anthropic's."""
    codes = sorted({400, 429, 500, *statuses})
    body: type[BaseModel] = ErrorResponse
    if anthropic:
        body = AnthropicErrorResponse
    elif openai:
        body = OpenAIErrorResponse
    return {code: {"model": body, "description": _DESCRIPTIONS[code]} for code in codes}


# One server-sent event: `data` holds a JSON object, or "[DONE]" at the end.
_SSE_EVENT = {
    "type": "object",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    "required": ["data"],
}


def sse_ok(model: type | None, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 that is JSON (`model`, or any object) or, with stream=true, server-sent events."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"text/event-stream": {"schema": _SSE_EVENT}},
    }
    if model is not None:
        response["model"] = model
    else:
        response["content"]["application/json"] = {"schema": {"type": "object"}}
    return {200: response}
