"""Request bodies of OpenAI's Responses API. Fields LocalLab cannot honour are refused by name;
unknown fields are refused too."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from locallab.api.schemas.types import StrictBody
from locallab.errors import InvalidRequestError

BUILT_IN_TOOLS = (
    "web_search", "web_search_preview", "file_search", "code_interpreter", "computer_use",
    "computer_use_preview", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
)  # fmt: skip


class TextFormat(StrictBody):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(StrictBody):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = Field(None, description="Accepted; not used.")


class ResponsesRequest(StrictBody):
    model: str = Field(..., min_length=1, description="A model id from GET /v1/models.")
    input: str | list[dict[str, Any]] = Field(
        ..., description="Text, or a list of input items (messages with input_text/output_text parts)."
    )
    instructions: str | None = Field(None, description="A system message for this response only.")
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    text: TextConfig | None = None
    store: bool = Field(True, description="Keep the response for GET and previous_response_id.")
    previous_response_id: str | None = Field(None, min_length=1)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    stream: bool = False
    stream_options: dict[str, Any] | None = Field(None, description="Accepted; not used.")
    truncation: Literal["auto", "disabled"] | None = Field(None, description="Accepted; not used.")
    user: str | None = Field(None, description="Accepted; not used.")
    service_tier: str | None = Field(None, description="Accepted; not used.")
    prompt_cache_key: str | None = Field(None, description="Accepted; LocalLab caches by itself.")
    safety_identifier: str | None = Field(None, description="Accepted; not used.")
    include: list[str] | None = Field(None, description="Accepted; nothing extra is included.")
    parallel_tool_calls: bool | None = None
    # refused by name (see refuse_unsupported)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tool_calls: int | None = None
    background: bool | None = None
    reasoning: dict[str, Any] | None = None
    conversation: Any = None
    prompt: Any = None

    def refuse_unsupported(self) -> None:
        for i, tool in enumerate(self.tools or ()):
            kind = tool.get("type")
            if kind in BUILT_IN_TOOLS or (isinstance(kind, str) and kind.startswith(BUILT_IN_TOOLS)):
                raise InvalidRequestError(
                    f"tools[{i}]: the built-in tool '{kind}' is not available in LocalLab; remove it."
                )
            if kind != "function":
                raise InvalidRequestError(
                    f"tools[{i}].type: only 'function' tools are supported (got {kind!r})."
                )
        if self.background:
            raise InvalidRequestError(
                "background: background responses are not supported; send the request without it "
                "(or with stream true)."
            )
        if self.reasoning is not None:
            raise InvalidRequestError(
                f"reasoning: model '{self.model}' does not reason (no reasoning effort or summaries); "
                "remove reasoning."
            )
        if self.conversation is not None:
            raise InvalidRequestError(
                "conversation: the Conversations API is not supported; chain responses with "
                "previous_response_id."
            )
        if self.prompt is not None:
            raise InvalidRequestError("prompt: stored prompt templates are not supported; send input.")
        if isinstance(self.input, str) and not self.input:
            raise InvalidRequestError("input: must not be empty.")
        if isinstance(self.input, list) and not self.input:
            raise InvalidRequestError("input: must hold at least one item.")

    def output_constraint(self) -> dict[str, Any]:
        """SamplingParams fields for text.format (the same JSON grammar as response_format)."""
        fmt = self.text.format if self.text else None
        if fmt is None or fmt.type == "text":
            return {}
        if fmt.type == "json_object":
            return {"json_output": True}
        if fmt.schema_ is None:
            raise InvalidRequestError("text.format.schema: required when type is 'json_schema'.")
        return {"json_output": True, "json_schema": fmt.schema_}
