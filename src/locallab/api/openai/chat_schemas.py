"""Request bodies of the OpenAI-compatible routes (/v1). A parameter LocalLab cannot honour is refused by
name; unknown parameters are refused too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from locallab.api.strict import StrictBody
from locallab.engines.base import SamplingParams
from locallab.errors import InvalidRequestError

MAX_STOP = 4
StopText = Annotated[str, Field(min_length=1)]
# Parameters of OpenAI's API that LocalLab does not implement: refused with a 400 naming them.
UNSUPPORTED = (
    "logit_bias", "audio", "modalities", "prediction", "reasoning_effort", "web_search_options",
    "service_tier", "store", "metadata",
)  # fmt: skip
TOOL_FIELDS = ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls")


class _Body(StrictBody):
    pass


class TextPart(_Body):
    type: Literal["text"]
    text: str


class FunctionCall(_Body):
    """A call in the history; `arguments` is JSON text (an object is accepted too)."""

    name: str
    arguments: Any = None


class ToolCallItem(_Body):
    id: str = Field(..., min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall
    index: int | None = None  # present when a client echoes streamed calls back


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None  # assistant
    tool_call_id: str | None = None  # tool
    function_call: FunctionCall | None = None  # assistant, legacy functions
    # what the openai package echoes back when an answer's message is appended to the history
    refusal: str | None = None
    annotations: list[Any] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class FunctionDefinition(_Body):
    name: str = Field(..., description="1 to 64 letters, digits, underscores or hyphens.")
    description: str | None = None
    parameters: Any = Field(None, description="A JSON schema of the arguments object.")
    strict: bool | None = Field(None, description="Accepted; the arguments always follow the schema.")


class ToolDefinitionItem(_Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Body):
    include_usage: bool = False


class JsonSchemaFormat(_Body):
    name: str = Field(..., min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _OpenAISampling(_Body):
    """Fields shared by /v1/chat/completions and /v1/completions."""

    model: str = Field(..., min_length=1, description="A model id from GET /v1/models.")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, ge=0.0, le=1.0)
    n: int = Field(1, ge=1, description="Only 1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP)] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 2)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = Field(None, description="Accepted for compatibility; not used.")
    # LocalLab extensions, as vLLM and llama.cpp's server have them
    top_k: int = Field(0, ge=0, description="LocalLab extension: keep the k likeliest tokens; 0 keeps all.")
    repetition_penalty: float = Field(1.0, gt=0.0, le=2.0, description="LocalLab extension; 1.0 is off.")
    min_p: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="LocalLab extension: drop tokens less likely than min_p times the likeliest; 0 is off.",
    )
    # OpenAI parameters LocalLab refuses by name (see UNSUPPORTED; tools only on chat completions)
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: Any = None
    logit_bias: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    service_tier: Any = None
    store: Any = None
    metadata: Any = None

    def refuse_unsupported(self) -> None:
        for name in UNSUPPORTED:
            if getattr(self, name) is not None:
                raise InvalidRequestError(f"{name}: not supported by LocalLab; remove it from the request.")
        if self.n != 1:
            raise InvalidRequestError("n: only n=1 is supported; send separate requests for more choices.")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError("stream_options: only allowed when stream is true.")

    def sampling(self, **extra: Any) -> SamplingParams:
        stops = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if any(not s for s in stops):
            raise InvalidRequestError("stop: stop sequences must not be empty.")
        return SamplingParams(
            max_tokens=1,  # the generation service sets the real limit
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            min_p=self.min_p,
            do_sample=self.temperature > 0,
            seed=self.seed,
            stop=stops,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            **extra,
        )


class ChatCompletionRequest(_OpenAISampling):
    messages: list[ChatMessage] = Field(..., min_length=1)
    tools: list[ToolDefinitionItem] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDefinition] | None = Field(None, description="Legacy form of tools.")
    function_call: Literal["none", "auto"] | NamedFunction | None = Field(
        None, description="Legacy form of tool_choice."
    )
    max_tokens: int | None = Field(None, ge=1, description="Deprecated by OpenAI; max_completion_tokens.")
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None

    def token_limit(self) -> int | None:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            if self.max_tokens != self.max_completion_tokens:
                raise InvalidRequestError("max_tokens: set max_tokens or max_completion_tokens, not both.")
        return self.max_completion_tokens or self.max_tokens

    def output_constraint(self) -> dict[str, Any]:
        """SamplingParams fields for response_format."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return {}
        if fmt.type == "json_object":
            return {"json_output": True}
        if fmt.json_schema is None:
            raise InvalidRequestError("response_format.json_schema: required when type is 'json_schema'.")
        schema = fmt.json_schema.schema_
        return {"json_output": True, "json_schema": schema} if schema is not None else {"json_output": True}

    def logprob_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError("top_logprobs: requires logprobs to be true.")
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_OpenAISampling):
    def refuse_unsupported(self) -> None:
        for name in TOOL_FIELDS:
            if getattr(self, name) is not None:
                raise InvalidRequestError(f"{name}: tools are for /v1/chat/completions; remove it here.")
        self._refuse_completion_fields()

    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        ..., description="One prompt (a list holding one string is accepted)."
    )
    max_tokens: int | None = Field(16, ge=1, description="New tokens; 16 when not set, as OpenAI's API.")
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)

    def text(self) -> str:
        text = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        if not text:
            raise InvalidRequestError("prompt: must not be empty.")
        return text

    def _refuse_completion_fields(self) -> None:
        super().refuse_unsupported()
        if self.echo:
            raise InvalidRequestError("echo: not supported by LocalLab; remove it or set it to false.")
        if self.suffix is not None:
            raise InvalidRequestError("suffix: not supported by LocalLab (no fill-in-the-middle).")
        if self.best_of not in (None, 1):
            raise InvalidRequestError("best_of: only 1 is supported.")
