"""Request bodies of Ollama's API (/api). Every field Ollama's own server knows is declared, so that a
field LocalLab cannot honour is refused by name (see wire.py) and a misspelt one is refused as unknown."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from locallab.api.schemas.types import StrictBody
from locallab.errors import InvalidRequestError

KeepAlive = float | str | None
Format = Literal["", "json"] | dict[str, Any] | None


class Options(StrictBody):
    """`options`: what each becomes is in wire.py (APPLIED_OPTIONS, IGNORED_OPTIONS)."""

    num_predict: int | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(None, gt=0.0, le=2.0)
    repeat_last_n: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    num_ctx: int | None = Field(None, ge=1)
    # Ollama options that have no counterpart here; accepted and ignored (docs/features/ollama.md lists them)
    num_keep: int | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    penalize_newline: bool | None = None
    numa: bool | None = None
    num_batch: int | None = None
    num_gpu: int | None = None
    main_gpu: int | None = None
    low_vram: bool | None = None
    f16_kv: bool | None = None
    logits_all: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    embedding_only: bool | None = None
    num_thread: int | None = None


class _Generation(StrictBody):
    model: str = Field(..., min_length=1, description="A model name, such as smollm2-135m-instruct:latest.")
    stream: bool = Field(True, description="NDJSON chunks unless false.")
    format: Format = Field(None, description='"json", or a JSON schema the answer must match.')
    options: Options | None = None
    keep_alive: KeepAlive = Field(
        None, description='Seconds or a Go duration ("5m"); negative keeps it loaded, 0 unloads it.'
    )
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class GenerateRequest(_Generation):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None


class ToolCallFunction(StrictBody):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    index: int | None = None


class ToolCall(StrictBody):
    function: ToolCallFunction
    id: str | None = None
    type: str | None = None


class Message(StrictBody):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class ToolFunction(StrictBody):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(StrictBody):
    type: Literal["function"] = "function"
    function: ToolFunction


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] | None = None


class ModelRequest(StrictBody):
    """/api/show, /api/delete: `model`, or the legacy `name`."""

    model: str | None = None
    name: str | None = None
    verbose: bool | None = None

    def ref(self) -> str:
        value = self.model or self.name
        if not value:
            raise InvalidRequestError("model: this field is required (the model's name).")
        return value


class PullRequest(ModelRequest):
    stream: bool = True
    insecure: bool | None = None


class CopyRequest(StrictBody):
    source: str = Field(..., min_length=1)
    destination: str = Field(..., min_length=1)


class EmbedRequest(StrictBody):
    model: str = Field(..., min_length=1)
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    options: Options | None = None
    keep_alive: KeepAlive = None


class LegacyEmbeddingsRequest(StrictBody):
    model: str = Field(..., min_length=1)
    prompt: str = ""
    options: Options | None = None
    keep_alive: KeepAlive = None
