"""Request bodies. Unknown fields are refused (400 naming them) rather than silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from locallab.api.openai.chat_schemas import NamedToolChoice, ToolCallItem, ToolDefinitionItem
from locallab.api.strict import StrictBody
from locallab.engines.base import SamplingParams

MAX_STOP_SEQUENCES = 8
StopText = Annotated[str, Field(min_length=1)]


class _Strict(StrictBody):
    pass


class SamplingFields(_Strict):
    model_id: str | None = Field(
        None, min_length=1, description="Model to use; null means the current model."
    )
    stream: bool = Field(False, description="Send the answer as server-sent events while it is generated.")
    keep_alive: float | None = Field(
        None,
        ge=0,
        description="Seconds the model stays loaded once idle after this request "
        "(null: LOCALLAB_KEEP_ALIVE). The default model always stays.",
    )
    max_length: int | None = Field(
        None, ge=1, description="Most new tokens to generate (null: the server default, 512)."
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Randomness; 0 picks the likeliest token.")
    top_p: float = Field(0.9, ge=0.0, le=1.0, description="Nucleus sampling: keep tokens up to this mass.")
    top_k: int = Field(40, ge=0, description="Keep only the k likeliest tokens; 0 keeps all.")
    repetition_penalty: float = Field(
        1.1, gt=0.0, le=2.0, description="Penalty for tokens seen in the last 64; 1.0 turns it off."
    )
    do_sample: bool = Field(True, description="false: greedy decoding (always the likeliest token).")
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP_SEQUENCES)] | None = Field(
        None, description=f"Text that ends the answer (not included): a string or up to {MAX_STOP_SEQUENCES}."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 2, description="Seed for reproducible sampling.")
    max_time: float | None = Field(
        None, gt=0.0, description="Seconds after which generation ends with finish_reason 'time'."
    )
    format: Literal["json"] | dict[str, Any] | None = Field(
        None,
        description='"json": the answer is JSON; a JSON schema: the answer is JSON valid against it. '
        "Enforced while decoding.",
    )

    def sampling(self) -> SamplingParams:
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        return SamplingParams(
            max_tokens=self.max_length or 1,  # the generation service sets the real limit
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            do_sample=self.do_sample,
            seed=self.seed,
            stop=stops,
            max_time=self.max_time,
            json_output=self.format is not None,
            json_schema=self.format if isinstance(self.format, dict) else None,
        )


class GenerateRequest(SamplingFields):
    prompt: str = Field(..., min_length=1, description="The text to continue or answer.")
    system_prompt: str | None = Field(None, description="System message placed before the prompt.")
    raw: bool = Field(False, description="true: send the prompt as is, without the model's chat template.")


MAX_BATCH_PROMPTS = 32


class BatchGenerateRequest(SamplingFields):
    prompts: list[Annotated[str, Field(min_length=1)]] = Field(
        ..., min_length=1, max_length=MAX_BATCH_PROMPTS, description="Prompts answered together."
    )
    system_prompt: str | None = Field(None, description="System message placed before every prompt.")
    raw: bool = Field(False, description="true: send the prompts as they are, without the chat template.")

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise ValueError("/generate/batch answers all prompts at once and cannot stream")
        return value


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCallItem] | None = Field(None, description="Calls the assistant made (as OpenAI's).")
    tool_call_id: str | None = Field(None, description="On a tool message: the call it answers.")

    def text(self) -> str:
        return self.content


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation so far.")
    tools: list[ToolDefinitionItem] | None = Field(
        None, description="Functions the model may call (as OpenAI's)."
    )
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = Field(
        None, description="none, auto (default with tools), required, or a named function (as OpenAI's)."
    )
    parallel_tool_calls: bool | None = Field(
        None, description="Allow several calls in one answer (default true)."
    )


class LoadModelRequest(_Strict):
    model_id: str = Field(..., min_length=1, description="Catalog id or path to a .gguf file.")
    wait: bool = Field(
        True, description="false: answer 202 at once and load in the background (see /models/status/{id})."
    )
    keep_alive: float | None = Field(
        None, ge=0, description="Seconds the model stays loaded once idle (null: LOCALLAB_KEEP_ALIVE)."
    )


class PullModelRequest(_Strict):
    model_id: str = Field(
        ...,
        min_length=1,
        max_length=1024,
        description="A catalog id of a Hub model, or a Hub file as hf://owner/repo/file.gguf.",
    )
    stream: bool = Field(True, description="Send progress as server-sent events; false: answer when done.")


class UnloadModelRequest(_Strict):
    model_id: str = Field(..., min_length=1, description="A loaded model.")
