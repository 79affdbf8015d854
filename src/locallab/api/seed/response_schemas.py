"""Response bodies, as the OpenAPI schema documents them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from locallab.engines.base import FinishReason


class PromptTokensDetails(BaseModel):
    cached_tokens: int = Field(
        ..., description="Prompt tokens reused from the KV cache of an earlier request."
    )


class UsageBody(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class GenerateResponse(BaseModel):
    response: str
    model: str
    finish_reason: FinishReason
    usage: UsageBody


class BatchGenerateResponse(BaseModel):
    responses: list[str] = Field(..., description="One answer per prompt, in the order of the prompts.")
    finish_reasons: list[FinishReason]
    model: str
    usage: UsageBody = Field(..., description="Totals over all prompts.")


class FunctionCallBody(BaseModel):
    name: str
    arguments: str = Field(..., description="The arguments object as JSON text.")


class ToolCallBody(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallBody


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(..., description="The answer's text (with tool calls: the text before them).")
    tool_calls: list[ToolCallBody] | None = Field(None, description="Present when the model called tools.")


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | Literal["tool_calls"]


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageBody


class LoadModelResponse(BaseModel):
    status: Literal["success", "loading"] = "success"
    model_id: str
    message: str


class PullModelResponse(BaseModel):
    status: Literal["success"] = "success"
    model_id: str = Field(..., description="The id that loads the model now.")
    completed: int = Field(..., description="Bytes downloaded.")
    total: int | None = Field(..., description="Bytes in the file.")
    path: str
    sha256: str = Field(..., description="The file's sha256; empty for a model folder (several files).")
    verified: bool = Field(..., description="The sha256 matched the catalog's (or the Hub's) checksum.")


class DeleteModelResponse(BaseModel):
    status: Literal["deleted"] = "deleted"
    model_id: str
    path: str
    freed_bytes: int


class ModelDetails(BaseModel):
    id: str
    name: str
    description: str
    engine: str
    format: str
    parameters: str
    quantization: str
    context_length: int
    license: str
    size_bytes: int | None
    sha256: str | None
    source: str = Field(..., description="Where the file comes from: a PyPI package or a Hub repository.")
    installed: bool
    path: str | None = Field(..., description="The model file, once installed.")
    status: Literal["ready", "loading", "failed", "not_loaded"]
    error: str | None = Field(None, description="Why the last load failed.")


class ModelStatusResponse(BaseModel):
    model_id: str
    status: Literal["ready", "loading", "failed", "not_loaded"]
    error: str | None = Field(None, description="Why the last load failed.")


class CurrentModelResponse(BaseModel):
    id: str
    name: str
    engine: str
    context_length: int = Field(..., description="Tokens one request may use (prompt and answer).")
    parameters: int
    quantization: str
    size_bytes: int
    loaded_at: str
    is_loaded: Literal[True] = True


def _generates_text() -> list[Literal["completions", "embeddings"]]:
    return ["completions"]


class AvailableModel(BaseModel):
    id: str
    name: str
    description: str
    engine: str
    size_bytes: int | None
    installed: bool
    is_loaded: bool
    capabilities: list[Literal["completions", "embeddings"]] = Field(
        default_factory=_generates_text,
        description='"completions": generates text (chat, generate); "embeddings": POST /v1/embeddings.',
    )


class AvailableModelsResponse(BaseModel):
    models: list[AvailableModel]
    current_model: str | None


class HealthResponse(BaseModel):
    status: Literal["healthy"] = "healthy"
    model: str | None
    model_status: Literal["ready", "loading", "none"]


class ReadinessResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: str | None = Field(..., description="The default model; null when the server runs without one.")
