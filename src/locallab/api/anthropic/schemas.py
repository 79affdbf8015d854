"""Request bodies of Anthropic's Messages API. Fields LocalLab cannot honour are refused by name
(see `MessagesRequest.refuse_unsupported`); unknown fields are refused too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from locallab.api.schemas.types import StrictBody
from locallab.errors import InvalidRequestError


class _Block(StrictBody):
    cache_control: dict[str, Any] | None = Field(None, description="Accepted; LocalLab caches by itself.")


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[Any] | None = None


class ImageBlock(_Block):
    type: Literal["image"]
    source: dict[str, Any]


class DocumentBlock(_Block):
    type: Literal["document"]
    source: dict[str, Any]
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool = False


class ThinkingBlock(_Block):
    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


# A plain union: StrictBody's before-validators rule out pydantic's discriminator; `type` picks anyway.
ContentBlock = TextBlock | ImageBlock | DocumentBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock


class Message(StrictBody):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ThinkingConfig(StrictBody):
    type: Literal["enabled", "disabled", "adaptive", "between_tools"]
    budget_tokens: int | None = None
    display: str | None = None


class OutputFormat(StrictBody):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(..., alias="schema")


class OutputConfig(StrictBody):
    effort: str | None = Field(None, description="Accepted; LocalLab's models do not think, so not used.")
    format: OutputFormat | None = Field(None, description="Structured output: enforced by a JSON grammar.")


class Tool(StrictBody):
    name: str = Field(..., min_length=1, max_length=128)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = Field(None, description="Accepted; LocalLab caches by itself.")
    strict: bool | None = Field(
        None,
        description="Accepted: a forced call, and under auto a call once begun, is decoded under the schema.",
    )
    eager_input_streaming: bool | None = Field(
        None, description="Accepted: a streamed call's input always comes as the model writes it."
    )
    input_examples: list[dict[str, Any]] | None = Field(None, description="Accepted; not used.")


class ToolChoiceBody(StrictBody):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class ConversationBody(StrictBody):
    """Fields that /v1/messages and /v1/messages/count_tokens share."""

    model: str = Field(..., min_length=1, description="A model id from GET /v1/models.")
    messages: list[Message] = Field(..., min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = Field(None, description="Client tools (name, description, input_schema).")
    tool_choice: ToolChoiceBody | None = None
    thinking: ThinkingConfig | None = Field(None, description="Refused: no LocalLab model thinks.")
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = Field(None, description="Accepted; LocalLab caches by itself.")
    speed: str | None = Field(None, description="Accepted; not used.")
    user_profile_id: str | None = Field(None, description="Accepted; not used.")
    workspace_id: str | None = Field(None, description="Accepted; not used.")

    def refuse_unsupported(self) -> None:
        if self.thinking is not None and self.thinking.type != "disabled":
            raise InvalidRequestError(
                f"thinking: model '{self.model}' does not think (no extended thinking); remove thinking "
                "or set its type to 'disabled'."
            )
        for i, message in enumerate(self.messages):
            if isinstance(message.content, str):
                continue
            for j, block in enumerate(message.content):
                where = f"messages[{i}].content[{j}]"
                if isinstance(block, ImageBlock | DocumentBlock):
                    raise InvalidRequestError(
                        f"{where}: {block.type} blocks are not supported: no LocalLab model reads images "
                        "or documents yet; send text."
                    )
                if isinstance(block, ToolUseBlock) and message.role != "assistant":
                    raise InvalidRequestError(f"{where}: tool_use blocks belong in assistant messages.")
                if isinstance(block, ToolResultBlock) and message.role != "user":
                    raise InvalidRequestError(f"{where}: tool_result blocks belong in user messages.")


class CountTokensRequest(ConversationBody):
    pass


class MessagesRequest(ConversationBody):
    max_tokens: int = Field(
        ..., ge=1, description="Most tokens to generate (required, as in Anthropic's API)."
    )
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = Field(None, max_length=16)
    stream: bool = False
    temperature: float = Field(1.0, ge=0.0, le=1.0)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="Keep the k likeliest tokens; 0 keeps all.")
    metadata: dict[str, Any] | None = Field(None, description="Accepted; not used.")
    service_tier: str | None = Field(None, description="Accepted; not used.")
    inference_geo: str | None = Field(None, description="Accepted; not used.")
    container: Any = Field(None, description="Refused: LocalLab runs no code-execution containers.")

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.container is not None:
            raise InvalidRequestError("container: LocalLab runs no code-execution containers; remove it.")

    def output_constraint(self) -> dict[str, Any]:
        """SamplingParams fields for output_config.format (the JSON grammar the OpenAI routes use)."""
        fmt = self.output_config.format if self.output_config else None
        return {} if fmt is None else {"json_output": True, "json_schema": fmt.schema_}
