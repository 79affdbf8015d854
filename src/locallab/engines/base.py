"""The Engine protocol and the values that cross it: what to generate, and the pieces that come back."""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard

import numpy as np

from locallab.engines.tools import CallGrammar, ToolCallDelta, ToolUse

FinishReason = Literal["stop", "length", "time"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token, and when to stop."""

    max_tokens: int
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repetition_penalty: float = 1.0
    do_sample: bool = True
    seed: int | None = None
    stop: tuple[str, ...] = ()
    max_time: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_p: float = 0.0  # drop tokens less likely than min_p times the likeliest one (0: off)
    penalty_last_n: int = 64  # the penalties look at this many last tokens (0: none, -1: all of them)
    json_output: bool = False  # constrain the output to JSON...
    json_schema: dict[str, Any] | None = None  # ...matching this schema (checked by check_json_schema)
    logprobs: int | None = None  # report each token's log-probability and this many alternatives
    call_grammar: CallGrammar | None = None  # constrain tool calls to their schemas (see CallGrammar)

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature == 0.0

    def penalty_window(self, prompt_length: int) -> int:
        """How many last tokens the penalties see; -1 (all) is as many as this sequence can hold."""
        return prompt_length + self.max_tokens if self.penalty_last_n < 0 else self.penalty_last_n


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate.

    Local engines read `prompt_tokens`. An engine that takes text prompts (`takes_text_prompts`, the
    remote engine) reads `prompt` (a plain prompt, sent as is) or `messages` (a conversation, which the
    upstream puts in its own chat template) instead; then `prompt_tokens` is empty and the engine
    reports the token counts its upstream gives.
    """

    prompt_tokens: list[int]
    sampling: SamplingParams
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None
    tools: ToolUse | None = None  # for an engine that takes text prompts: tools to forward upstream

    @property
    def is_text(self) -> bool:
        return self.prompt is not None or self.messages is not None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability under the model, and the likeliest alternatives."""

    text: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True)
class GenerationChunk:
    """New text of one step. The last chunk of a generation carries `finish_reason`."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from an earlier request
    logprobs: tuple[TokenLogprob, ...] = ()  # one per token of this chunk, when requested
    tool_calls: tuple[ToolCallDelta, ...] = ()  # calls an upstream parsed itself (the remote engine)
    stop_sequence: str | None = None  # on the last chunk: the stop sequence that ended it, when known


@dataclass(frozen=True)
class ModelInfo:
    """What an engine learned about the model it loaded (from the file's own metadata)."""

    path: Path
    architecture: str
    name: str
    context_length: int
    parameters: int
    quantization: str
    size_bytes: int
    chat_template: str | None
    bos_token: str = ""
    eos_token: str = ""
    add_bos: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


class GenerationStream(AsyncIterator[GenerationChunk]):
    """The chunks of one admitted generation.

    `aclose()` cancels the generation whether or not reading has started, and so does dropping the
    stream unread (garbage collection), so an abandoned request never keeps its slot.
    """

    def __init__(self, chunks: AsyncGenerator[GenerationChunk, None], cancel: Callable[[], None]) -> None:
        self._chunks = chunks
        self.cancel = cancel
        weakref.finalize(self, cancel)

    def __aiter__(self) -> GenerationStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        self.cancel()
        await self._chunks.aclose()


@dataclass(frozen=True)
class KvPoolUsage:
    """The llama.cpp engine's KV pool: cells in all, cells holding a token, and how it made room."""

    size: int
    used: int
    kv_type: str
    prefix_cache: bool
    deterministic: bool  # the pool is emptied whenever the engine goes idle
    evictions: int  # cached prefixes dropped for room
    preemptions: int  # running requests paused (and later recomputed) for room


@dataclass(frozen=True)
class EngineLoad:
    active: int
    queued: int
    parallel: int


def takes_text_prompts(engine: object) -> bool:
    """Whether an engine renders chat and counts tokens itself (class attribute `takes_text_prompts =
    True`). GenerationService then skips the local chat template, tokenizer and context check, and
    sends the engine `GenerationRequest.prompt` or `.messages`; its `tokenize` is never called."""
    return getattr(engine, "takes_text_prompts", False) is True


def constrains_decoding(engine: object) -> bool:
    """Whether an engine enforces grammars (JSON schemas, tool calls); one that cannot sets the class
    attribute `constrains_decoding = False` (the transformers engine), and such requests are refused."""
    return getattr(engine, "constrains_decoding", True) is not False


class Engine(Protocol):
    """A loaded model that turns prompt tokens into text.

    Implementations keep blocking work (inference, file I/O) off the caller's event loop. An engine
    whose server renders chat and counts tokens itself sets `takes_text_prompts = True` (see
    `takes_text_prompts` and `GenerationRequest`); the protocol is otherwise the same.
    """

    engine_name: str
    info: ModelInfo

    @property
    def context_length(self) -> int:
        """Tokens one sequence may hold: prompt plus generated text."""
        ...

    async def tokenize(self, text: str) -> list[int]:
        """Tokens of a prompt, with the model's start token when it wants one; special tokens parsed."""
        ...

    @property
    def load(self) -> EngineLoad:
        """Requests generating now and requests waiting for a slot."""
        ...

    def generate(self, request: GenerationRequest) -> GenerationStream:
        """Admits the request at once (ServerBusyError when the queue is full) and returns its stream.

        Closing the stream early, or dropping it, cancels the generation.
        """
        ...

    async def close(self) -> None:
        """Finish running generations, then free the model."""
        ...


Vectors = np.ndarray[Any, np.dtype[np.float32]]


class EmbeddingEngine(Engine, Protocol):
    """A loaded embedding model: turns texts into L2-normalised vectors (class attribute `embeds = True`).

    `generate` refuses with InvalidRequestError: an embedding model makes no text."""

    dimensions: int

    async def tokenize_many(self, texts: list[str]) -> list[list[int]]:
        """The tokens of each text, with the model's special tokens, off the event loop."""
        ...

    def truncate(self, tokens: list[int], limit: int) -> list[int]:
        """At most `limit` of `tokens`, keeping the special tokens the model needs at the end."""
        ...

    async def embed(self, inputs: list[list[int]]) -> Vectors:
        """One vector per input, rows in input order; inputs of concurrent calls share passes."""
        ...


def embeds(engine: object) -> TypeGuard[EmbeddingEngine]:
    """Whether an engine makes embeddings (class attribute `embeds = True`) rather than text."""
    return getattr(engine, "embeds", False) is True
