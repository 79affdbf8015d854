"""Generation: turns a prompt or a conversation into prompt tokens, checks limits, runs the engine and
counts usage.

An engine that takes text prompts (`takes_text_prompts`: the remote engine) gets the prompt as text,
or the conversation as messages (`Conversation`), instead: its upstream applies the chat template,
counts tokens and checks the context, and reports usage back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from locallab.engines.base import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
    SamplingParams,
    TokenLogprob,
    constrains_decoding,
    embeds,
    takes_text_prompts,
)
from locallab.engines.json_schema import check_json_schema
from locallab.errors import (
    ChatTemplateError,
    ContextOverflowError,
    EngineError,
    InvalidRequestError,
    ServerShuttingDownError,
)
from locallab.services.metrics import Metrics
from locallab.services.registry import LoadedModel, ModelRegistry
from locallab.services.stats import Stats
from locallab.services.template_worker import TemplateRenderer
from locallab.services.tools import (
    ToolCallDelta,
    ToolFormat,
    ToolUse,
    call_grammar,
    check_tool_use,
    detect_format,
)
from locallab.services.tools.output import ToolOutput
from locallab.services.tools.prompting import template_inputs


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

    @classmethod
    def of(cls, chunk: GenerationChunk) -> Usage:
        return cls(chunk.prompt_tokens, chunk.completion_tokens, chunk.cached_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Conversation:
    """A chat kept as messages, for an engine that applies the chat template itself."""

    messages: tuple[dict[str, Any], ...]
    tools: ToolUse | None = None


Prompt = str | Conversation  # what prepare() takes: text, or a conversation for a text-prompt engine


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: FinishReason
    usage: Usage
    logprobs: tuple[TokenLogprob, ...] = ()
    tool_calls: tuple[ToolCallDelta, ...] = ()  # as an engine's upstream relayed them


@dataclass(frozen=True)
class PreparedGeneration:
    """A request checked against its model and ready to run."""

    model: LoadedModel
    request: GenerationRequest
    capped_max_length: int | None = None  # set when the request asked for more than the server allows
    tools: ToolUse | None = None

    def tool_output(self) -> ToolOutput | None:
        """Splits this generation's chunks into content and calls; None when it offers no tools."""
        if self.tools is None or self.tools.choice.mode == "none":
            return None
        return ToolOutput(tool_format_of(self.model), relay=self.request.is_text)

    def headers(self) -> dict[str, str]:
        """Response headers that tell the client a limit was lowered."""
        if self.capped_max_length is None:
            return {}
        return {"X-LocalLab-Max-Length-Capped": str(self.capped_max_length)}


@dataclass(frozen=True)
class GenerationLimits:
    default_max_tokens: int = 512
    max_tokens_cap: int = 8192
    max_time_cap: float = 600.0
    max_messages: int = 512
    template_seconds: float = 2.0


class ShutdownSignal:
    """Set when the server is asked to stop: generations get until `deadline` to finish."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def begin(self, grace: float) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + grace

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


def chat_template_of(model: LoadedModel) -> str | None:
    """The model file's own chat template, else the one its catalog entry declares (base models)."""
    return model.engine.info.chat_template or (model.entry.chat_template if model.entry else None)


def tool_format_of(model: LoadedModel) -> ToolFormat:
    return detect_format(chat_template_of(model))


class GenerationService:
    def __init__(
        self,
        registry: ModelRegistry,
        stats: Stats,
        limits: GenerationLimits | None = None,
        shutdown: ShutdownSignal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._registry = registry
        self._stats = stats
        self.limits = limits or GenerationLimits()
        self.shutdown = shutdown or ShutdownSignal()
        self.templates = TemplateRenderer(self.limits.template_seconds)

    async def prompt_for_chat(
        self, model: LoadedModel, messages: Sequence[Mapping[str, Any]], tools: ToolUse | None = None
    ) -> Prompt:
        """The conversation in the model's own chat template, rendered in a child process; for an engine
        that takes text prompts, the conversation itself. Messages may hold tool turns and `tools` the
        request's tools (see `locallab.services.tools.prompting`).

        A template is code from the model file: one that runs too long or takes too much memory is
        given up on (400) and its process killed, so it cannot stall or starve the server.
        """
        if len(messages) > self.limits.max_messages:
            raise InvalidRequestError(
                f"messages: {len(messages)} messages, more than the {self.limits.max_messages} this server "
                "accepts (LOCALLAB_MAX_MESSAGES)."
            )
        if tools is not None:
            check_tool_use(tools)
        if takes_text_prompts(model.engine):
            return Conversation(tuple(dict(m) for m in messages), tools)
        if embeds(model.engine):
            raise InvalidRequestError(
                f"model: '{model.id}' is an embedding model; it makes vectors (POST /v1/embeddings), not "
                "chat answers. Ask a chat model instead (GET /models/available lists them)."
            )
        info = model.engine.info
        template = chat_template_of(model)
        if not template:
            raise ChatTemplateError(
                f"Model '{model.id}' has no chat template in its metadata (it is probably a base model), "
                'so it cannot chat. Use POST /generate with "raw": true, or load an instruct model.'
            )
        rendered, tool_list = template_inputs(messages, tools, detect_format(template))
        text = await self.templates.render(
            model.id, template, rendered, info.bos_token, info.eos_token, tool_list
        )
        # The tokenizer adds the start token itself; don't send it twice.
        if info.add_bos and info.bos_token and text.startswith(info.bos_token):
            text = text[len(info.bos_token) :]
        return text

    async def prompt_for_generate(
        self, model: LoadedModel, prompt: str, *, system_prompt: str | None, raw: bool
    ) -> Prompt:
        """A plain prompt becomes one user turn in the chat template, unless raw or the model file has
        none (a base model continues the text; a template its catalog entry declares is for chats).
        An engine that takes text prompts gets the turn as a conversation."""
        if raw or (not takes_text_prompts(model.engine) and not model.engine.info.chat_template):
            return prompt
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return await self.prompt_for_chat(model, messages)

    async def prepare(
        self,
        model: LoadedModel,
        prompt: Prompt,
        sampling: SamplingParams,
        *,
        max_tokens: int | None,
        tools: ToolUse | None = None,
    ) -> PreparedGeneration:
        """`tools`: the request's tools, already in the prompt; for a local engine, the calls are then
        forced into their schemas by grammar (`locallab.services.tools.grammar`)."""
        if sampling.json_schema is not None:
            check_json_schema(sampling.json_schema)
        if tools is not None and tools.choice.mode != "none" and sampling.json_output:
            raise InvalidRequestError(
                "response_format: cannot be combined with tools; a tool call's arguments already follow "
                "the tool's schema."
            )
        if takes_text_prompts(model.engine):
            return replace(self._prepare_text(model, prompt, sampling, max_tokens), tools=tools)
        if tools is not None and tools.choice.mode != "none" and not constrains_decoding(model.engine):
            raise InvalidRequestError(
                f"tools: the {model.engine.engine_name} engine cannot constrain decoding, so it cannot "
                "guarantee valid tool calls; use a GGUF model (llama.cpp engine) for tools, or send "
                "tool_choice 'none'."
            )
        if tools is not None:
            sampling = replace(sampling, call_grammar=call_grammar(tools, tool_format_of(model)))
        if isinstance(prompt, Conversation):
            raise TypeError("a conversation needs an engine that takes text prompts")
        tokens = await model.engine.tokenize(prompt)
        context = model.engine.context_length
        if len(tokens) >= context:
            raise ContextOverflowError(
                f"The prompt is {len(tokens)} tokens long but the model's context holds {context} tokens "
                "(prompt and answer together); shorten the prompt."
            )
        room = context - len(tokens)
        limits = self.limits
        wanted = limits.default_max_tokens if max_tokens is None else max_tokens
        capped = limits.max_tokens_cap if wanted > limits.max_tokens_cap else None
        max_time = min(sampling.max_time or limits.max_time_cap, limits.max_time_cap)
        params = replace(sampling, max_tokens=min(wanted, limits.max_tokens_cap, room), max_time=max_time)
        return PreparedGeneration(model, GenerationRequest(tokens, params), capped, tools)

    def _prepare_text(
        self, model: LoadedModel, prompt: Prompt, sampling: SamplingParams, max_tokens: int | None
    ) -> PreparedGeneration:
        """The same limits, without a local context check: the upstream knows its context."""
        limits = self.limits
        wanted = limits.default_max_tokens if max_tokens is None else max_tokens
        capped = limits.max_tokens_cap if wanted > limits.max_tokens_cap else None
        max_time = min(sampling.max_time or limits.max_time_cap, limits.max_time_cap)
        params = replace(sampling, max_tokens=min(wanted, limits.max_tokens_cap), max_time=max_time)
        if isinstance(prompt, Conversation):
            request = GenerationRequest([], params, messages=prompt.messages, tools=prompt.tools)
        else:
            request = GenerationRequest([], params, prompt=prompt)
        return PreparedGeneration(model, request, capped)

    def start(self, prepared: PreparedGeneration) -> GenerationStream:
        """Admits the generation now (ServerBusyError when the queue is full) and returns its chunks.

        Closing the returned iterator cancels the generation.
        """
        chunks = prepared.model.engine.generate(prepared.request)
        return GenerationStream(self._counted(prepared, chunks), chunks.cancel)

    async def _counted(
        self, prepared: PreparedGeneration, chunks: GenerationStream
    ) -> AsyncGenerator[GenerationChunk, None]:
        metrics = self._metrics
        last: GenerationChunk | None = None
        started = previous = time.monotonic()
        try:
            async with contextlib.aclosing(chunks):
                while True:
                    remaining = self.shutdown.remaining()
                    try:
                        if remaining is None:
                            chunk = await chunks.__anext__()
                        else:
                            chunk = await asyncio.wait_for(chunks.__anext__(), remaining)
                    except StopAsyncIteration:
                        return
                    except asyncio.TimeoutError:
                        raise ServerShuttingDownError(
                            "The server is shutting down; this generation was stopped. Send it again later."
                        ) from None
                    now = time.monotonic()
                    if chunk.completion_tokens and (last is None or not last.completion_tokens):
                        metrics.ttft.observe(now - started)
                    elif last is not None and chunk.completion_tokens > last.completion_tokens:
                        gap = (now - previous) / (chunk.completion_tokens - last.completion_tokens)
                        metrics.inter_token.observe(gap)
                    previous = now
                    last = chunk
                    yield chunk
        finally:
            prompt = len(prepared.request.prompt_tokens)
            if prepared.request.is_text and last is not None:  # the engine's upstream counted them
                prompt = last.prompt_tokens
            generated = last.completion_tokens if last else 0
            self._stats.generation_finished(prompt, generated)
            metrics.prompt_tokens.inc(prompt)
            metrics.generated_tokens.inc(generated)
            if last is not None:
                metrics.cached_tokens.inc(last.cached_tokens)
            reason = last.finish_reason if last is not None and last.finish_reason else "cancelled"
            metrics.generations.labels(reason).inc()

    async def complete(self, prepared: PreparedGeneration) -> Completion:
        return await self.collect(self.start(prepared))

    async def complete_all(self, prepared: Sequence[PreparedGeneration]) -> list[Completion]:
        """Runs generations concurrently; all are admitted first, and one failure cancels the rest."""
        streams: list[GenerationStream] = []
        try:
            for item in prepared:
                streams.append(self.start(item))
        except BaseException:
            for stream in streams:
                await stream.aclose()
            raise
        tasks = [asyncio.ensure_future(self.collect(stream)) for stream in streams]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def collect(self, stream: GenerationStream) -> Completion:
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        calls: list[ToolCallDelta] = []
        final: GenerationChunk | None = None
        async with contextlib.aclosing(stream) as chunks:
            async for chunk in chunks:
                parts.append(chunk.text)
                logprobs.extend(chunk.logprobs)
                calls.extend(chunk.tool_calls)
                final = chunk
        if final is None or final.finish_reason is None:
            raise EngineError("The engine ended the generation without a final result.")
        text = "".join(parts)
        return Completion(text, final.finish_reason, Usage.of(final), tuple(logprobs), tuple(calls))
